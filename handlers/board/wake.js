// callstate wake: what the board page and its service worker (sw.js)
// share about call notifications. The page loads it with a script tag,
// the worker with importScripts, so that both read the same device record
// and the worker has one rule for what a notification says.
//
// The push payload is the one of docs/wake.md ("The board as a phone
// app"); numbers come formatted by the server (fromFormatted, the board's
// own formatting), so there is no number formatting here.
"use strict";

self.callstateWake = (() => {
  const dbName = "callstate-wake";
  const storeName = "device";
  const deviceKey = "device";
  const maxField = 256; // longer strings are not from callstate

  // --- The device record: {id, secret, user, extension, endpoint, at} ---

  function openDB() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(dbName, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(storeName);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  async function withStore(mode, fn) {
    const db = await openDB();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(storeName, mode);
        const req = fn(tx.objectStore(storeName));
        tx.oncomplete = () => resolve(req.result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
      });
    } finally {
      db.close();
    }
  }

  // getDevice returns this browser's device record, or null.
  const getDevice = () => withStore("readonly", (s) => s.get(deviceKey)).then((d) => d || null);
  // putDevice keeps the device record (its secret is shown only once).
  const putDevice = (d) => withStore("readwrite", (s) => s.put(d, deviceKey));
  // deleteDevice forgets the device record.
  const deleteDevice = () => withStore("readwrite", (s) => s.delete(deviceKey));

  // --- The push payload ---

  // parse reads a push message's text. It returns {kind: "incoming", ...}
  // or {kind: "clear", ...} with every field a string, or throws an Error
  // saying what is wrong; nothing of a malformed message is shown.
  function parse(text) {
    if (typeof text !== "string" || text === "") throw new Error("push message has no payload");
    let m;
    try {
      m = JSON.parse(text);
    } catch (err) {
      throw new Error("push payload is not JSON: " + err.message);
    }
    if (m === null || typeof m !== "object" || Array.isArray(m)) throw new Error("push payload is not a JSON object");
    if (m.v !== 1) throw new Error("push payload version " + JSON.stringify(m.v) + " is not 1");
    const str = (name, required) => {
      const v = m[name];
      if (v === undefined || v === null || v === "") {
        if (required) throw new Error("push payload has no " + name);
        return "";
      }
      if (typeof v !== "string") throw new Error("push payload's " + name + " is not a string");
      if (v.length > maxField) throw new Error("push payload's " + name + " is longer than " + maxField + " characters");
      return v;
    };
    const call = str("call", true), journey = str("journey", true);
    if (m.kind === "clear") return { kind: "clear", call, journey, reason: str("reason", false) };
    if (m.kind !== "incoming") throw new Error("push payload kind " + JSON.stringify(m.kind) + " is neither incoming nor clear");
    const out = {
      kind: "incoming", call, journey,
      from: str("from", false), fromFormatted: str("fromFormatted", false), fromName: str("fromName", false),
      to: str("to", false), toName: str("toName", false), user: str("user", false), extension: str("extension", false),
      at: str("at", false), ready: str("ready", false),
    };
    if (!out.to && !out.toName && !out.user && !out.extension) throw new Error("push payload says nobody was called");
    return out;
  }

  // notification is what the worker shows for an incoming call: the
  // caller's name, else the number formatted, else "Anonymous", "for"
  // whoever was called; tagged with the journey so that a second push of
  // the same journey (its clear) replaces or closes it.
  function notification(m) {
    const title = m.fromName || m.fromFormatted || m.from || "Anonymous";
    const body = "for " + (m.toName || m.to || m.extension || m.user);
    return {
      title,
      options: {
        body, tag: m.journey, renotify: true, requireInteraction: true,
        icon: "icon-192.png", badge: "icon-192.png",
        timestamp: Date.parse(m.at) || Date.now(),
        data: { call: m.call, journey: m.journey },
      },
    };
  }

  // readyURL is the absolute URL of the payload's ready path on origin, or
  // "" when it is not a path on that origin: the device's secret goes to
  // its own server only.
  function readyURL(ready, origin) {
    if (!ready.startsWith("/") || ready.startsWith("//")) return "";
    const u = new URL(ready, origin);
    return u.origin === origin ? u.href : "";
  }

  return { getDevice, putDevice, deleteDevice, parse, notification, readyURL };
})();
