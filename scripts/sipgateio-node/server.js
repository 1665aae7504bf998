// The official sipgate.io Node library's webhook server, storing nothing,
// with the signature check on: the comparison in scripts/bench-webhooks.sh.
// Usage: node server.js PORT
const { createWebhookModule } = require('sipgateio');

const port = Number(process.argv[2] || 18090);
createWebhookModule()
  .createServer({ port, hostname: '127.0.0.1', serverAddress: `http://127.0.0.1:${port}/` })
  .then((server) => {
    server.onNewCall(() => {});
    server.onAnswer(() => {});
    server.onHangUp(() => {});
    console.log(`sipgateio webhook server on 127.0.0.1:${port}`);
  });
