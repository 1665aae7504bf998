// A webhook receiver for callstate's tests: it checks every request's
// signature with the standardwebhooks package (not callstate's code), and
// prints one JSON line per request. Usage:
//
//   node receiver.mjs PORT SECRET [PLAN]
//
// PLAN lists the answers to each message's first tries, by webhook-id,
// e.g. "500,429:2": the first try gets 500, the second 429 with
// Retry-After: 2, later ones 200. A request whose signature does not
// verify gets 401. DELAY_MS delays every answer.
import http from "node:http";
import crypto from "node:crypto";
import { Webhook } from "standardwebhooks";

const [port, secret, plan = ""] = process.argv.slice(2);
const wh = new Webhook(secret);
const steps = plan ? plan.split(",") : [];
const delay = Number(process.env.DELAY_MS || 0);
const tries = new Map();

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let verified = true;
    let error = "";
    try {
      wh.verify(body, req.headers);
    } catch (e) {
      verified = false;
      error = String(e && e.message ? e.message : e);
    }
    const id = req.headers["webhook-id"] || "";
    const n = (tries.get(id) || 0) + 1;
    tries.set(id, n);
    let status = 200;
    let retryAfter = "";
    if (!verified) {
      status = 401;
    } else if (n <= steps.length) {
      const [code, after] = steps[n - 1].split(":");
      status = Number(code);
      if (after) retryAfter = after;
    }
    let type = "";
    let journey = "";
    try {
      const m = JSON.parse(body);
      type = m.type || "";
      journey = (m.data && m.data.journey_id) || "";
    } catch {
      // not JSON (the zammad format): type and journey stay empty
    }
    const sha = crypto.createHash("sha256").update(body).digest("hex");
    const answer = () => {
      process.stdout.write(JSON.stringify({ id, try: n, status, verified, error, sha, type, journey,
        content_type: req.headers["content-type"] || "", body: type ? "" : body, at: Date.now() }) + "\n");
      res.writeHead(status, retryAfter ? { "Retry-After": retryAfter } : {});
      res.end();
    };
    if (delay > 0) setTimeout(answer, delay);
    else answer();
  });
});
server.listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ listening: server.address().port }) + "\n");
});
