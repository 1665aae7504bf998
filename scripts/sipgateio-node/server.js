// The official sipgate.io Node library's webhook server, storing nothing,
// with the signature check on: the comparison in scripts/bench-webhooks.sh.
// Usage: node server.js PORT
//
// With the check on, the library also wants X-Forwarded-For to be one of
// sipgate's addresses; the captured request the benchmark replays carries
// one. A request that fails either check still gets a 200, with an
// <Error …/> body instead of a <Response>, so the benchmark counts only
// answers that contain "<Response" (callstate-load -expect).
const { createWebhookModule } = require('sipgateio');

const port = Number(process.argv[2] || 18090);
createWebhookModule()
  .createServer({
    port,
    hostname: '127.0.0.1',
    serverAddress: `http://127.0.0.1:${port}/`,
    skipSignatureVerification: false,
  })
  .then((server) => {
    server.onNewCall(() => {});
    server.onAnswer(() => {});
    server.onHangUp(() => {});
    console.log(`sipgateio webhook server on 127.0.0.1:${port}`);
  });
