// callstate board's service worker: wakes for a push and shows the
// incoming call (docs/wake.md, "The board as a phone app"). It serves no
// fetches: the board is always read live from the server.
"use strict";

importScripts("wake.js");

const wake = self.callstateWake;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (ev) => ev.waitUntil(self.clients.claim()));

// report posts what the worker did to every open window of the board, so
// that the page (and a test) can see it.
async function report(msg) {
  const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  wins.forEach((w) => w.postMessage({ callstateWake: msg }));
}

self.addEventListener("push", (ev) => ev.waitUntil(onPush(ev)));

async function onPush(ev) {
  let m;
  try {
    m = wake.parse(ev.data ? ev.data.text() : "");
  } catch (err) {
    // Nothing to show: a message that is not callstate's says nothing
    // true about a call.
    console.warn("callstate: push message ignored:", err.message);
    await report({ type: "ignored", error: err.message });
    return;
  }
  if (m.kind === "clear") {
    const open = await self.registration.getNotifications({ tag: m.journey });
    open.forEach((n) => n.close());
    await report({ type: "cleared", tag: m.journey, call: m.call, reason: m.reason, closed: open.length });
    return;
  }
  const n = wake.notification(m);
  const [shown, ready] = await Promise.allSettled([
    self.registration.showNotification(n.title, n.options),
    sayReady(m),
  ]);
  if (shown.status === "rejected") console.warn("callstate: notification not shown:", String(shown.reason));
  await report({
    type: "shown", call: m.call, tag: n.options.tag, title: n.title, body: n.options.body,
    shown: shown.status === "fulfilled", error: shown.status === "rejected" ? String(shown.reason) : "",
    ready: ready.status === "fulfilled" ? ready.value : "error: " + String(ready.reason),
  });
}

// sayReady tells the server this device is awake for the call (POST the
// payload's ready path with the device's own secret). It returns what
// happened, for the report.
async function sayReady(m) {
  if (!m.ready) return "no ready path";
  const url = wake.readyURL(m.ready, self.location.origin);
  if (!url) {
    console.warn("callstate: ready path is not on this server, not sent:", m.ready);
    return "not sent: not on this server";
  }
  const dev = await wake.getDevice();
  if (!dev || !dev.secret) {
    console.warn("callstate: no device record here; ready not sent");
    return "not sent: no device";
  }
  const res = await fetch(url, { method: "POST", headers: { Authorization: "Bearer " + dev.secret }, cache: "no-store" });
  if (!res.ok) console.warn("callstate: ready answered", res.status);
  return String(res.status);
}

self.addEventListener("notificationclick", (ev) => {
  ev.notification.close();
  ev.waitUntil(openCall((ev.notification.data || {}).call || ""));
});

// openCall shows the call on the board: in a board window already open
// (focused, told which call), else in a new one at /board/?call=ID.
async function openCall(call) {
  const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  // The app's own window first, else a board at / that is not a wall screen.
  const scope = new URL(self.registration.scope).pathname;
  const urls = wins.map((w) => new URL(w.url));
  let i = urls.findIndex((u) => u.origin === self.location.origin && u.pathname.startsWith(scope));
  if (i < 0) i = urls.findIndex((u) => u.origin === self.location.origin && u.pathname === "/" && !u.searchParams.has("wall"));
  const board = i < 0 ? null : wins[i];
  if (board) {
    board.postMessage({ callstateWake: { type: "open-call", call } });
    try {
      await board.focus();
    } catch (err) {
      console.warn("callstate: could not focus the board:", err.message);
    }
    return;
  }
  const url = new URL(self.registration.scope);
  if (call) url.searchParams.set("call", call);
  await self.clients.openWindow(url.href);
}
