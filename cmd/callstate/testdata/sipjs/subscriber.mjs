// A web phone's BLF key: SIP.js's Subscriber, in Node over WebSocket.
//
//   node subscriber.mjs ws://127.0.0.1:7080 sip:w0@callstate.test dialog desk secret
//
// It subscribes to the target's event package, authenticating as user with
// password, and prints one JSON line per NOTIFY ({"event", "state",
// "body"}) and {"subscribed": true} once the subscription is accepted. It
// unsubscribes and exits on SIGTERM or when stdin closes.
import WebSocket from "ws";
import { UserAgent, Subscriber } from "sip.js";

// SIP.js's transport uses the browser's WebSocket. Over wss:// the tests'
// certificate is their own, signed by no one: like a browser told to trust it.
globalThis.WebSocket = class extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { rejectUnauthorized: false });
  }
};

const [server, target, event, user, password] = process.argv.slice(2);
const ua = new UserAgent({
  uri: UserAgent.makeURI(`sip:${user}@callstate.test`),
  authorizationUsername: user,
  authorizationPassword: password,
  transportOptions: { server },
  logLevel: "error",
});
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

await ua.start();
const sub = new Subscriber(ua, UserAgent.makeURI(target), event, { expires: 120 });
sub.delegate = {
  onNotify: (n) => {
    n.accept();
    out({
      event,
      state: n.request.getHeader("Subscription-State"),
      body: n.request.body,
    });
  },
};
sub.stateChange.addListener((s) => {
  if (s === "Subscribed") out({ subscribed: true });
});
await sub.subscribe();

const stop = async () => {
  try {
    await sub.unsubscribe();
    await ua.stop();
  } finally {
    process.exit(0);
  }
};
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
