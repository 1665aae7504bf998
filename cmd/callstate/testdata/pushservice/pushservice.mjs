// A Web Push service stand-in for callstate's tests. It makes
// subscriptions as a browser's push service would (a P-256 key pair and
// an auth secret per subscription), and for every message posted to one:
//   - checks the VAPID Authorization (RFC 8292): "vapid t=<JWT>, k=<key>",
//     the JWT ES256-signed by k, aud the endpoint's origin, exp in the
//     future and at most 24 h ahead;
//   - decrypts the body with the http_ece package (RFC 8188/8291, not
//     callstate's code);
//   - answers as the subscription's plan says, and prints one JSON line.
// Usage: node pushservice.mjs PORT
//   POST /subscribe?plan=410         -> the subscription's JSON; plan: the
//        answers to its messages in turn ("429:3" is 429 with
//        Retry-After: 3), then 201
//   POST /push/<id>                  -> the push resource
import http from "node:http";
import crypto from "node:crypto";
import ece from "http_ece";

const [port] = process.argv.slice(2);
const subs = new Map();
let next = 1;

const b64u = (b) => Buffer.from(b).toString("base64url");

function checkVAPID(header, origin) {
  const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(header || "");
  if (!m) throw new Error("Authorization is not 'vapid t=…, k=…': " + header);
  const [, jwt, k] = m;
  const parts = jwt.split(".");
  if (parts.length !== 3) throw new Error("JWT of " + parts.length + " parts");
  const head = JSON.parse(Buffer.from(parts[0], "base64url"));
  const claims = JSON.parse(Buffer.from(parts[1], "base64url"));
  if (head.alg !== "ES256") throw new Error("alg " + head.alg);
  const point = Buffer.from(k, "base64url");
  if (point.length !== 65 || point[0] !== 4) throw new Error("k is not an uncompressed P-256 point");
  const key = crypto.createPublicKey({
    key: { kty: "EC", crv: "P-256", x: b64u(point.subarray(1, 33)), y: b64u(point.subarray(33)) },
    format: "jwk",
  });
  const ok = crypto.verify("sha256", Buffer.from(parts[0] + "." + parts[1]),
    { key, dsaEncoding: "ieee-p1363" }, Buffer.from(parts[2], "base64url"));
  if (!ok) throw new Error("JWT signature does not verify against k");
  if (claims.aud !== origin) throw new Error("aud " + claims.aud + ", want " + origin);
  const now = Math.floor(Date.now() / 1000);
  if (!(claims.exp > now)) throw new Error("exp in the past");
  if (claims.exp > now + 24 * 3600) throw new Error("exp more than 24 h ahead");
  return { k, sub: claims.sub || "", exp: claims.exp };
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const u = new URL(req.url, "http://127.0.0.1");
    const origin = "http://" + req.headers.host;
    if (req.method === "POST" && u.pathname === "/subscribe") {
      const id = String(next++);
      const ecdh = crypto.createECDH("prime256v1");
      ecdh.generateKeys();
      const auth = crypto.randomBytes(16);
      const plan = (u.searchParams.get("plan") || "").split(",").filter(Boolean);
      subs.set(id, { ecdh, auth, plan, n: 0 });
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({
        endpoint: origin + "/push/" + id, expirationTime: null,
        keys: { p256dh: b64u(ecdh.getPublicKey()), auth: b64u(auth) },
      }));
      return;
    }
    const m = /^\/push\/(\d+)$/.exec(u.pathname);
    const s = m && subs.get(m[1]);
    if (req.method !== "POST" || !s) {
      res.writeHead(404);
      res.end();
      return;
    }
    const body = Buffer.concat(chunks);
    const line = {
      sub: m[1], at: Date.now(), ttl: req.headers["ttl"] || "", urgency: req.headers["urgency"] || "",
      topic: req.headers["topic"] || "", encoding: req.headers["content-encoding"] || "", size: body.length,
      verified: false, decrypted: false, error: "", payload: null, k: "", vapidSub: "",
    };
    let status = 201;
    try {
      const v = checkVAPID(req.headers["authorization"], origin);
      line.k = v.k;
      line.vapidSub = v.sub;
      line.verified = true;
      if (line.encoding !== "aes128gcm") throw new Error("Content-Encoding " + line.encoding);
      const plain = ece.decrypt(body, { version: "aes128gcm", privateKey: s.ecdh, authSecret: b64u(s.auth) });
      line.payload = JSON.parse(plain.toString("utf8"));
      line.decrypted = true;
    } catch (e) {
      line.error = String(e && e.message ? e.message : e);
      status = line.verified ? 400 : 403;
    }
    const headers = {};
    if (status === 201) {
      const step = s.plan[s.n++];
      if (step) {
        const [code, after] = step.split(":");
        status = Number(code);
        if (after) headers["Retry-After"] = after;
      }
    }
    if (status === 201) headers["Location"] = origin + "/message/" + m[1] + "-" + s.n;
    line.status = status;
    process.stdout.write(JSON.stringify(line) + "\n");
    res.writeHead(status, headers);
    res.end();
  });
});
server.listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ listening: server.address().port }) + "\n");
});
