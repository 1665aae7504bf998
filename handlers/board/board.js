// callstate live board: lamps, active calls and recent history, kept up to
// date from the Server-Sent Events stream at api/stream. No dependencies.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("access_token");
  const historySize = 20;
  const lamps = new Map();  // "source/extension" -> lamp
  const calls = new Map();  // id -> call
  let lastID = "";
  let source = null;
  let retryTimer = null;

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  function streamURL() {
    const q = new URLSearchParams();
    if (token) q.set("access_token", token);
    if (lastID) q.set("last_event_id", lastID);
    const s = q.toString();
    return "api/stream" + (s ? "?" + s : "");
  }

  function setConn(state, text) {
    const c = $("conn");
    c.className = "conn " + state;
    c.textContent = text;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    setConn("connecting", "connecting…");
    source = new EventSource(streamURL());
    source.onopen = () => setConn("live", "live");
    source.onerror = () => {
      // The browser retries by itself (with Last-Event-ID) unless the
      // server refused the stream; then we retry, with the last id.
      if (source.readyState === EventSource.CLOSED) {
        setConn("offline", "offline, retrying…");
        retryTimer = setTimeout(connect, 3000);
      } else {
        setConn("connecting", "reconnecting…");
      }
    };
    const on = (type, fn) => source.addEventListener(type, (ev) => {
      if (ev.lastEventId) lastID = ev.lastEventId;
      fn(JSON.parse(ev.data));
      render();
    });
    on("snapshot", (s) => {
      lamps.clear();
      calls.clear();
      s.lamps.forEach(putLamp);
      s.calls.forEach(putCall);
    });
    on("lamps", (s) => { lamps.clear(); s.lamps.forEach(putLamp); });
    on("lamp", putLamp);
    on("call", putCall);
  }

  function putLamp(l) {
    const k = l.source + "/" + l.extension;
    if (l.lamp === "removed") lamps.delete(k); else lamps.set(k, l);
  }

  function putCall(c) {
    calls.set(c.id, c);
    // Keep every active call and the last ended ones.
    const ended = [...calls.values()].filter((x) => !x.active).sort(byEnd);
    ended.slice(historySize).forEach((x) => calls.delete(x.id));
  }

  const byEnd = (a, b) => (b.ended_at || b.updated_at).localeCompare(a.ended_at || a.updated_at);
  const since = (t) => (t ? Math.max(0, (Date.now() - Date.parse(t)) / 1000) : 0);

  function duration(sec) {
    sec = Math.floor(sec);
    const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }

  const lampText = { idle: "Free", ringing: "Ringing", busy: "In call", hold: "On hold", unavailable: "Unavailable" };

  // The call that a lamp's timer counts: its longest-running active call.
  function lampCall(l) {
    let best = null;
    for (const c of calls.values()) {
      if (!c.active || c.source !== l.source) continue;
      const mine = c.extension === l.extension || (c.state === "ringing" && (c.user_ids || []).includes(l.extension));
      if (mine && (!best || (c.started_at || "") < (best.started_at || ""))) best = c;
    }
    return best;
  }

  function party(c) {
    const names = (c.users || []).join(", ");
    if (c.direction === "out") return [c.from || c.extension, c.to || "?"];
    return [c.from || "unknown", names || c.to || c.extension || "?"];
  }

  function render() {
    // Lamps
    const list = $("lamps");
    const items = [...lamps.values()].sort((a, b) =>
      (a.name || a.extension).localeCompare(b.name || b.extension, undefined, { numeric: true }));
    list.replaceChildren(...items.map((l) => {
      const li = el("li", "lamp");
      li.dataset.key = l.source + "/" + l.extension;
      li.dataset.lamp = l.lamp;
      li.append(el("span", "dot"));
      const who = el("div", "who");
      who.append(el("div", "name", l.name || l.extension));
      const st = el("div", "state", lampText[l.lamp] || l.lamp);
      st.dataset.lampState = "";
      who.append(st);
      li.append(who);
      li.title = (l.name ? l.name + " · " : "") + l.extension + " (" + l.source + ")";
      return li;
    }));
    $("no-lamps").hidden = items.length > 0;

    // Active calls, oldest first
    const active = [...calls.values()].filter((c) => c.active)
      .sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""));
    $("active").replaceChildren(...active.map((c) => callItem(c, true)));
    $("active-count").textContent = active.length;
    $("no-active").hidden = active.length > 0;

    // History, newest first
    const ended = [...calls.values()].filter((c) => !c.active).sort(byEnd).slice(0, historySize);
    $("history").replaceChildren(...ended.map((c) => callItem(c, false)));
    $("no-history").hidden = ended.length > 0;
    tick();
  }

  function callItem(c, live) {
    const li = el("li", "call");
    li.dataset.id = c.id;
    li.dataset.state = c.state;
    li.dataset.hold = c.on_hold;
    li.dataset.answered = !!c.answered_at;
    li.append(el("span", "dir", c.direction === "out" ? "↗" : c.direction === "in" ? "↙" : "•"));
    const [from, to] = party(c);
    const p = el("div", "parties", from + " → " + to);
    if (live) {
      const tag = c.on_hold ? "hold" : c.state;
      p.append(el("span", "tag " + tag, tag === "answered" ? "in call" : tag === "hold" ? "on hold" : "ringing"));
    }
    li.append(p);
    const t = el("span", "time");
    if (live) {
      t.dataset.since = c.answered_at || c.started_at || "";
    } else {
      t.textContent = c.answered_at && c.ended_at
        ? duration((Date.parse(c.ended_at) - Date.parse(c.answered_at)) / 1000) : "missed";
    }
    li.append(t);
    const when = c.started_at ? new Date(c.started_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    const who = c.answered_by ? "answered by " + c.answered_by : c.extension ? "ext. " + c.extension : "";
    const meta = [when, who, c.source, !live && c.cause ? c.cause : ""].filter(Boolean).join(" · ");
    li.append(el("div", "meta", meta));
    return li;
  }

  // tick updates the clock and every running duration once a second.
  function tick() {
    $("clock").textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    document.querySelectorAll(".call .time[data-since]").forEach((t) => {
      t.textContent = t.dataset.since ? duration(since(t.dataset.since)) : "";
    });
    document.querySelectorAll(".lamp").forEach((li) => {
      const l = lamps.get(li.dataset.key);
      if (!l) return;
      const st = li.querySelector(".state");
      const text = lampText[l.lamp] || l.lamp;
      const c = (l.lamp === "busy" || l.lamp === "ringing" || l.lamp === "hold") ? lampCall(l) : null;
      st.textContent = c ? text + " · " + duration(since(l.lamp === "ringing" ? c.started_at : (c.answered_at || c.started_at))) : text;
    });
  }

  setInterval(tick, 1000);
  tick();
  connect();
})();
