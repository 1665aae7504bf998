// callstate board: call notifications on this device. Registers the
// board's service worker (board/sw.js, scope board/), subscribes to push
// for one user or extension and registers the subscription as a device
// (POST api/devices), keeps the device's id and secret where the worker
// reads them (IndexedDB, wake.js), and turns it off again (DELETE).
// See docs/wake.md, "The board as a phone app".
"use strict";

(() => {
  const wake = self.callstateWake;
  const params = new URLSearchParams(location.search);
  const token = params.get("access_token");
  let enroll = params.get("enroll") || "";     // a one-time enrollment token (callstate devices enroll USER)
  const enrollUser = params.get("user") || ""; // whose it is, as the link says; the token refuses any other
  const $ = (id) => document.getElementById(id);
  const supported = window.isSecureContext && "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
  let reg = null; // the worker's registration, once registered
  let busy = false;

  // What the worker reported (shown, cleared, ignored), oldest first: the
  // page's record of what this device showed, read by the browser test.
  window.callstateWakeLog = [];

  // --- Messages -------------------------------------------------------------

  function say(text) {
    $("notify-msg").textContent = text;
    $("notify-msg").hidden = !text;
    if (text) openPanel(true);
  }

  // refusal turns a server's answer into words: its message, and the status.
  async function refusal(res) {
    let msg = "";
    try {
      const body = await res.json();
      msg = (body && (body.message || body.error)) || "";
    } catch {
      // not JSON: the status says it
    }
    return (msg ? msg + " " : "") + "(HTTP " + res.status + ")";
  }

  function openPanel(open) {
    $("notify-panel").hidden = !open;
    $("notify").setAttribute("aria-expanded", String(open));
  }

  // --- State ----------------------------------------------------------------

  async function render() {
    const dev = await wake.getDevice().catch(() => null);
    const sub = reg ? await reg.pushManager.getSubscription().catch(() => null) : null;
    const on = !!(dev && sub && sub.endpoint === dev.endpoint);
    const who = dev ? (dev.user ? "user " + dev.user : "extension " + dev.extension) : "";
    $("notify").textContent = on ? "🔔 Call notifications: on" : "🔔 Call notifications";
    $("notify-off").hidden = !dev;
    $("notify-form").hidden = on || !supported;
    $("notify-who-label").hidden = !!(enroll && enrollUser);
    if (!supported) {
      $("notify-state").textContent = window.isSecureContext
        ? "This browser cannot receive push messages. On an iPhone or iPad, add the board to the Home Screen first and open it from there."
        : "Call notifications need the board over https.";
    } else if (on) {
      $("notify-state").textContent = "On for " + who + ": this device shows each incoming call.";
    } else if (dev) {
      $("notify-state").textContent = "The browser dropped this device's push subscription (" + who + "): turn it off, then on again.";
    } else if (enroll) {
      $("notify-state").textContent = "This link turns on call notifications on this device for " +
        (enrollUser ? "user " + enrollUser : "the user it was made for (say which)") + ". It works once.";
    } else {
      $("notify-state").textContent = "Off. Choose whose incoming calls this device shows.";
    }
  }

  // People to choose from: the board's lamps (sipgate users, PBX extensions).
  function fillPeople() {
    const kind = $("notify-kind").value;
    const opts = [...document.querySelectorAll(".lamp[data-key]")].map((li) => {
      const [source, id] = li.dataset.key.split("/");
      const name = li.querySelector(".name");
      return { kind: source === "sipgate" ? "user" : "extension", id, name: name ? name.dataset.full || name.textContent : "" };
    }).filter((p) => p.kind === kind);
    $("notify-people").replaceChildren(...opts.map((p) => {
      const o = document.createElement("option");
      o.value = p.id;
      o.label = p.name;
      return o;
    }));
  }

  // --- The service worker -----------------------------------------------------

  // activated resolves with the registration once its worker is active.
  function activated(r) {
    if (r.active) return Promise.resolve(r);
    const w = r.installing || r.waiting;
    return new Promise((resolve, reject) => {
      w.addEventListener("statechange", () => {
        if (w.state === "activated") resolve(r);
        if (w.state === "redundant") reject(new Error("the service worker failed to install"));
      });
    });
  }

  async function registerWorker() {
    const r = await navigator.serviceWorker.register("board/sw.js", { scope: "board/" });
    reg = await activated(r);
    window.callstateWorkerScope = reg.scope;
    return reg;
  }

  // --- Turning on and off -----------------------------------------------------

  // serverKey returns the server's VAPID public key (GET
  // api/devices/vapid-key, open to all), or throws an Error for the person.
  async function serverKey() {
    let res;
    try {
      res = await fetch("api/devices/vapid-key", { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (err) {
      throw new Error("The server could not be reached: " + err.message);
    }
    if (res.status === 404) throw new Error("This server does not send call notifications (it has no push key).");
    if (!res.ok) throw new Error("The server gave no push key: " + await refusal(res));
    const body = await res.json().catch(() => ({}));
    return body.publicKey;
  }

  // applicationServerKey decodes the server's VAPID key (base64url of an
  // uncompressed P-256 point).
  function applicationServerKey(b64) {
    if (typeof b64 !== "string" || !/^[A-Za-z0-9_-]+={0,2}$/.test(b64)) throw new Error("the server's push key is not base64url");
    const bin = atob(b64.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "").padEnd(Math.ceil(b64.length / 4) * 4, "="));
    const key = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    if (key.length !== 65 || key[0] !== 4) throw new Error("the server's push key is not a P-256 public key");
    return key;
  }

  // enable subscribes this browser and registers it as a device for who
  // ({user} or {extension}). It throws an Error whose message is for the
  // person.
  async function enable(who) {
    if (Notification.permission === "denied") {
      throw new Error("Notifications are blocked for this site. Allow them in the browser's site settings, then try again.");
    }
    const perm = await Notification.requestPermission();
    if (perm !== "granted") {
      throw new Error(perm === "denied"
        ? "Notifications are blocked for this site. Allow them in the browser's site settings, then try again."
        : "Notifications were not allowed (the question was closed). Try again and choose Allow.");
    }
    const r = reg || await registerWorker();
    const key = applicationServerKey(await serverKey());

    const old = await r.pushManager.getSubscription();
    if (old) await old.unsubscribe(); // of another key or a device forgotten here
    let sub;
    try {
      sub = await r.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    } catch (err) {
      if (err.name === "NotAllowedError") {
        throw new Error("The browser refused push messages for this site: " + err.message + ". Allow notifications for this site, then try again.");
      }
      throw new Error("The browser could not subscribe at its push service: " + err.message +
        ". Is this device online? A browser without a push service cannot be woken.");
    }

    const body = { subscription: sub.toJSON(), name: deviceName() };
    if (who.user) body.user = who.user;
    if (who.extension) body.extension = who.extension;
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    const bearer = enroll || token;
    if (bearer) headers.Authorization = "Bearer " + bearer;
    window.callstateLastEnrollment = body; // what was sent, for the browser test
    let res;
    try {
      res = await fetch("api/devices", { method: "POST", headers, body: JSON.stringify(body) });
    } catch (err) {
      await sub.unsubscribe().catch(() => {});
      throw new Error("The server could not be reached: " + err.message);
    }
    if (res.status !== 201) {
      await sub.unsubscribe().catch(() => {});
      throw new Error("The server refused to register this device: " + await refusal(res));
    }
    const dev = await res.json();
    if (!dev || typeof dev.id !== "string" || typeof dev.secret !== "string" || !dev.id || !dev.secret) {
      await sub.unsubscribe().catch(() => {});
      throw new Error("The server's answer has no device id and secret.");
    }
    await wake.putDevice({
      id: dev.id, secret: dev.secret, user: dev.user || "", extension: dev.extension || "",
      endpoint: sub.endpoint, at: new Date().toISOString(),
    });
    if (enroll) {
      // The link worked once: it is of no further use in the address bar.
      enroll = "";
      const u = new URL(location.href);
      u.searchParams.delete("enroll");
      u.searchParams.delete("user");
      history.replaceState(null, "", u);
    }
  }

  function deviceName() {
    const p = (navigator.userAgentData && navigator.userAgentData.platform) || navigator.platform || "";
    return ("board" + (p ? " on " + p : "")).slice(0, 64);
  }

  // disable removes the device at the server (with its own secret) and
  // unsubscribes here. Unsubscribed, the device gets no more pushes even if
  // the server could not be told: its next push finds the subscription gone.
  async function disable() {
    const dev = await wake.getDevice();
    let problem = "";
    if (dev) {
      try {
        const res = await fetch("api/devices/" + encodeURIComponent(dev.id), {
          method: "DELETE", headers: { Authorization: "Bearer " + dev.secret },
        });
        if (!res.ok && res.status !== 404) problem = "The server did not remove the device: " + await refusal(res);
      } catch (err) {
        problem = "The server could not be reached to remove the device (" + err.message + ")";
      }
    }
    const sub = reg ? await reg.pushManager.getSubscription() : null;
    if (sub) await sub.unsubscribe();
    await wake.deleteDevice();
    if (problem) throw new Error(problem + "; this browser is unsubscribed, so it shows no more calls, and the server drops it at its next push.");
  }

  async function run(fn) {
    if (busy) return;
    busy = true;
    $("notify-on").disabled = $("notify-off").disabled = true;
    say("");
    try {
      await fn();
    } catch (err) {
      console.warn("callstate: call notifications:", err.message);
      say(err.message);
    } finally {
      busy = false;
      $("notify-on").disabled = $("notify-off").disabled = false;
      await render();
    }
  }

  // --- Wiring -----------------------------------------------------------------

  // A wall screen shows no notifications: it does not even register the
  // worker (unless an enrollment link opened it).
  if (document.body.classList.contains("wall") && !enroll) return;
  // The control shows where the server sends pushes (it serves its key).
  serverKey().then(() => {
    $("notify").hidden = false;
  }, (err) => {
    // An enrollment link says why it cannot work, unless the person has
    // tried already and been told (that answer came first and stays).
    if (enroll && $("notify-msg").hidden) say(err.message);
  });
  $("notify").addEventListener("click", () => {
    fillPeople();
    openPanel($("notify-panel").hidden);
  });
  $("notify-kind").addEventListener("change", fillPeople);
  $("notify-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (enroll && enrollUser) {
      run(() => enable({ user: enrollUser }));
      return;
    }
    const who = $("notify-who").value.trim();
    if (!who) {
      say("Say whose calls: a user id (like w0) or an extension (like 101).");
      return;
    }
    run(() => enable({ [$("notify-kind").value]: who }));
  });
  $("notify-off").addEventListener("click", () => run(disable));
  if (enroll || location.hash === "#wake") openPanel(true);

  if (supported) {
    navigator.serviceWorker.addEventListener("message", (ev) => {
      const m = ev.data && ev.data.callstateWake;
      if (!m) return;
      window.callstateWakeLog.push(m);
      if (m.type === "open-call") window.dispatchEvent(new CustomEvent("callstate:open-call", { detail: m.call }));
    });
    navigator.serviceWorker.startMessages();
    registerWorker().catch((err) => {
      console.warn("callstate: service worker not registered:", err.message);
      say("Call notifications are not available: the service worker did not start (" + err.message + ").");
    }).finally(render);
  } else {
    render();
  }
})();
