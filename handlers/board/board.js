// callstate team board: the team's lamps, the calls going on, today's
// numbers and missed calls, kept up to date from the Server-Sent Events
// stream at api/stream and from api/today. No dependencies.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("access_token");
  const wall = params.has("wall");
  const historySize = 20;
  const staleAfter = 3000;   // ms without the stream before the board greys out
  const retryEvery = 500;    // ms between reconnects while offline (a refused connection costs nothing)
  const openTimeout = 6000;  // ms a connection may take to open
  const maxNameChars = 24;   // names up to this long are shown whole
  const lamps = new Map();   // "source/extension" -> lamp
  const calls = new Map();   // id -> call
  let today = null;          // api/today's answer
  let source = null;
  let retryTimer = null, staleTimer = null, openTimer = null, todayTimer = null, renderTimer = null;
  let stale = false, offlineSince = null;
  let lampShape = "";        // names and count the tiles were sized for

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const withToken = (path) => (token ? path + "?access_token=" + encodeURIComponent(token) : path);
  const hhmm = (d) => d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

  if (wall) {
    document.body.classList.add("wall");
    // Keep a wall screen awake where the browser lets us.
    const awake = () => navigator.wakeLock && navigator.wakeLock.request("screen").catch(() => {});
    awake();
    document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && awake());
  }

  // --- Connection --------------------------------------------------------

  function setConn(state, text) {
    const c = $("conn");
    c.className = "conn " + state;
    c.textContent = text;
  }

  // setStale greys the whole board out (and stops its timers) while the
  // stream is gone, saying since when.
  function setStale(on) {
    if (stale === on) return;
    stale = on;
    document.body.classList.toggle("stale", on);
    $("offline").hidden = !on;
    if (on) $("offline-since").textContent = "since " + hhmm(offlineSince || new Date());
    tick();
  }

  // connect opens the stream afresh: without Last-Event-ID, so that the
  // server answers with one snapshot instead of replaying what was missed.
  function connect() {
    clearTimeout(retryTimer);
    clearTimeout(openTimer);
    if (source) source.close();
    setConn("connecting", stale ? "reconnecting…" : "connecting…");
    const s = new EventSource(withToken("api/stream"));
    if (!window.boardStreamAt) window.boardStreamAt = performance.now();
    source = s;
    openTimer = setTimeout(() => source === s && lost(), openTimeout);
    s.onopen = () => {
      clearTimeout(openTimer);
      clearTimeout(staleTimer);
      staleTimer = null;
      offlineSince = null;
      setConn("live", "live");
      fetchToday(); // at once, beside the snapshot
    };
    s.onerror = () => { if (source === s) lost(); };
    const on = (type, fn) => s.addEventListener(type, (ev) => {
      fn(JSON.parse(ev.data));
      scheduleRender();
    });
    on("snapshot", (snap) => {
      if (!window.boardSnapshotAt) window.boardSnapshotAt = performance.now();
      lamps.clear();
      calls.clear();
      snap.lamps.forEach(putLamp);
      snap.calls.forEach(putCall);
      setStale(false);
    });
    on("lamps", (m) => { lamps.clear(); m.lamps.forEach(putLamp); });
    on("lamp", putLamp);
    on("call", (c) => { putCall(c); scheduleToday(); });
  }

  // lost closes the stream and tries again shortly; past staleAfter the
  // board shows it is offline.
  function lost() {
    clearTimeout(openTimer);
    if (source) source.close();
    source = null;
    if (!offlineSince) offlineSince = new Date();
    setConn("offline", "offline, retrying…");
    if (!stale && !staleTimer) staleTimer = setTimeout(() => { staleTimer = null; setStale(true); }, staleAfter);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, retryEvery);
  }

  function putLamp(l) {
    const k = l.source + "/" + l.extension;
    if (l.lamp === "removed") lamps.delete(k); else lamps.set(k, l);
  }

  function putCall(c) {
    calls.set(c.id, c);
    if (calls.size > historySize * 4) {
      const ended = [...calls.values()].filter((x) => !x.active).sort(byEnd);
      ended.slice(historySize).forEach((x) => calls.delete(x.id));
    }
  }

  // --- Today's numbers ---------------------------------------------------

  async function fetchToday() {
    clearTimeout(todayTimer);
    todayTimer = null;
    try {
      const res = await fetch(withToken("api/today"), { headers: { Accept: "application/json" } });
      if (res.ok) {
        today = await res.json();
        today.receivedAt = Date.now();
        scheduleRender();
      }
    } catch (e) { /* offline: the stream says so */ }
  }

  // scheduleToday asks for the numbers again soon after a change, at most
  // every 700 ms.
  function scheduleToday() {
    if (!todayTimer) todayTimer = setTimeout(fetchToday, 700);
  }
  setInterval(() => { if (!stale) fetchToday(); }, 30000);

  // --- Rendering ---------------------------------------------------------

  // scheduleRender draws once for any number of events that come at once.
  function scheduleRender() {
    if (!renderTimer) renderTimer = setTimeout(() => { renderTimer = null; render(); }, 16);
  }

  const byEnd = (a, b) => (b.ended_at || b.updated_at).localeCompare(a.ended_at || a.updated_at);
  // Offline, time stands still where the stream was lost.
  const now = () => (stale && offlineSince ? offlineSince.getTime() : Date.now());
  const since = (t) => (t ? Math.max(0, (now() - Date.parse(t)) / 1000) : 0);

  function duration(sec) {
    sec = Math.floor(sec);
    const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }
  function talk(sec) {
    const m = Math.round(sec / 60);
    return m < 60 ? m + "m" : Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0");
  }

  const lampText = { idle: "Free", ringing: "Ringing", busy: "In call", hold: "On hold", unavailable: "Offline" };
  const lampName = (l) => l.name || l.extension;

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

  // The name a call's user goes by on the board: the lamp's.
  function userName(c, id) {
    const l = lamps.get(c.source + "/" + id);
    return l ? lampName(l) : "";
  }
  const person = (name, formatted, raw) => name || formatted || raw || "unknown";
  function list(names, n) {
    return names.length <= n ? names.join(", ") : names.slice(0, n).join(", ") + " +" + (names.length - n);
  }

  // parties returns who is talking to whom, in words: the caller by the
  // phonebook's name or the number for reading; an outgoing call's user
  // rather than their line; an answered call's answerer rather than all
  // whom it was offered to.
  function parties(c) {
    if (c.direction === "out") {
      const me = userName(c, c.extension) || (c.users || [])[0] || person(c.from_name, c.from_formatted, c.from);
      return { from: me, to: person(c.to_name, c.to_formatted, c.to), number: c.to_name ? c.to_formatted : "" };
    }
    const caller = person(c.from_name, c.from_formatted, c.from);
    let to;
    if (c.answered_at || c.state === "answered") {
      to = c.answered_by || userName(c, c.extension) || person(c.to_name, c.to_formatted, c.to);
    } else {
      const offered = (c.users || []).length ? c.users : (c.user_ids || []).map((id) => userName(c, id)).filter(Boolean);
      to = list(offered, 2) || userName(c, c.extension) || person(c.to_name, c.to_formatted, c.to);
    }
    return { from: caller, to, number: c.from_name ? c.from_formatted : "" };
  }

  function render() {
    const t0 = performance.now();
    renderLamps();
    renderToday();
    const active = [...calls.values()].filter((c) => c.active)
      .sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""));
    $("active").replaceChildren(...active.map((c) => callItem(c, true)));
    $("active-count").textContent = active.length;
    $("no-active").hidden = active.length > 0;

    const ended = [...calls.values()].filter((c) => !c.active).sort(byEnd).slice(0, historySize);
    $("history").replaceChildren(...ended.map((c) => callItem(c, false)));
    $("no-history").hidden = ended.length > 0;
    trim($("history"));
    trim($("missed-list"));
    tick();
    if (!document.body.dataset.ready) {
      document.body.dataset.ready = "1";
      window.boardReadyAt = performance.now();
      window.boardFirstRenderMs = window.boardReadyAt - t0;
    }
  }

  function renderLamps() {
    const items = [...lamps.values()].sort((a, b) =>
      lampName(a).localeCompare(lampName(b), undefined, { numeric: true }) || a.extension.localeCompare(b.extension));
    const count = new Map();
    items.forEach((l) => count.set(lampName(l), (count.get(lampName(l)) || 0) + 1));
    const people = new Map(((today && today.people) || []).map((p) => [p.user_id, p]));
    const states = { idle: 0, busy: 0, ringing: 0, hold: 0, unavailable: 0 };
    $("lamps").replaceChildren(...items.map((l) => {
      states[l.lamp] = (states[l.lamp] || 0) + 1;
      const li = el("li", "lamp");
      li.dataset.key = l.source + "/" + l.extension;
      li.dataset.lamp = l.lamp;
      li.append(el("span", "dot"));
      const who = el("div", "who");
      const line1 = el("div", "line1");
      line1.append(el("span", "name", lampName(l)));
      // Two of one name: tell them apart by extension or user id.
      if (count.get(lampName(l)) > 1) line1.append(el("span", "ext", l.extension));
      who.append(line1);
      const line2 = el("div", "line2");
      line2.append(el("span", "state", lampText[l.lamp] || l.lamp));
      const p = people.get(l.extension);
      const t = el("span", "today");
      if (p) {
        t.title = p.calls + " calls, " + p.missed + " missed, " + talk(p.talk_seconds) + " talk time today";
        t.append(el("b", "", String(p.calls)), " ☎");
        if (p.missed) t.append("  ", el("b", "missed-n", String(p.missed)), el("span", "missed-n", " ✕"));
        if (p.talk_seconds >= 30) t.append("  ", el("b", "", talk(p.talk_seconds)));
      }
      line2.append(t);
      who.append(line2);
      li.append(who);
      li.title = lampName(l) + (l.name ? " · " + l.extension : "");
      return li;
    }));
    $("no-lamps").hidden = items.length > 0;
    const busy = states.busy + states.hold;
    $("lamp-summary").textContent = items.length
      ? states.idle + " free · " + busy + " in call" + (states.ringing ? " · " + states.ringing + " ringing" : "") : "";
    if (!$("lamps-legend")) {
      const lg = el("span", "legend", "today: ☎ calls · ✕ missed · talk time");
      lg.id = "lamps-legend";
      $("lamps-h").append(lg);
    }
    const shape = items.length + "|" + items.map(lampName).join("|") + "|" + innerWidth + "x" + innerHeight;
    if (shape !== lampShape) {
      lampShape = shape;
      sizeTiles(items.map(lampName), count);
    }
  }

  // sizeTiles makes tiles as wide as the longest name (up to maxNameChars
  // characters) needs, then, on a wide screen, scales the lamps so that
  // all of them fit without scrolling, if they can at a readable size.
  let measure = null;
  function sizeTiles(names, count) {
    const ul = $("lamps");
    ul.style.setProperty("--lamp-font", "1em");
    const fs = parseFloat(getComputedStyle(ul).fontSize);
    measure = measure || document.createElement("canvas").getContext("2d");
    measure.font = "650 " + (fs * 1.05) + "px " + getComputedStyle(document.body).fontFamily;
    let widest = 0;
    for (const n of names) {
      let w = measure.measureText([...n].slice(0, maxNameChars).join("")).width;
      if (count.get(n) > 1) w += fs * 3.2; // the extension beside it
      widest = Math.max(widest, w);
    }
    // name + dot, gaps, padding and border; the second line needs ~12em.
    const em = Math.max(widest / fs + 3.4, 13.5);
    ul.style.setProperty("--tile-w", em.toFixed(2) + "em");
    fitLamps();
  }

  function fitLamps() {
    const ul = $("lamps"), box = $("lamps-box");
    if (getComputedStyle(box).overflowY !== "auto" || innerWidth < 1000 || !ul.firstElementChild) return; // narrow: the page scrolls
    const set = (k) => ul.style.setProperty("--lamp-font", (k / 20).toFixed(2) + "em");
    // Sizes scale with the font: measure once at 1em, then work out the
    // largest size (in steps of 0.05em) at which every lamp fits.
    set(20);
    const cs = getComputedStyle(ul);
    const fs = parseFloat(cs.fontSize), gap = parseFloat(cs.rowGap) || 0;
    const tileH = ul.firstElementChild.getBoundingClientRect().height;
    const tileW = parseFloat(ul.style.getPropertyValue("--tile-w")) * fs;
    const W = ul.clientWidth, H = box.clientHeight, N = ul.children.length;
    const fitsAt = (f) => {
      const cols = Math.max(1, Math.floor((W + gap * f) / ((tileW + gap) * f)));
      const rows = Math.ceil(N / cols);
      return rows * tileH * f + (rows - 1) * gap * f <= H;
    };
    const least = Math.round((wall ? 0.55 : 0.7) * 20);
    let k = 32;
    while (k > least && !fitsAt(k / 20)) k--;
    set(k);
    // Borders do not scale: step down while it still does not fit.
    while (box.scrollHeight > box.clientHeight + 1 && k > least) set(--k);
    if (box.scrollHeight > box.clientHeight + 1) set(20); // too many to fit readably: the grid scrolls
  }
  let resizeTimer = null;
  addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { lampShape = ""; render(); }, 150);
  });

  // trim hides the rows of a list cut off at the bottom of its section, on
  // a screen that does not scroll.
  function trim(ul) {
    const sec = ul.closest("section");
    const items = [...ul.children];
    items.forEach((li) => { li.hidden = false; });
    sec.dataset.cut = "";
    if (getComputedStyle(sec).overflow !== "hidden") return;
    const bottom = sec.getBoundingClientRect().bottom;
    const cut = items.map((li) => li.getBoundingClientRect().bottom > bottom + 0.5); // read all, then write
    items.forEach((li, i) => { li.hidden = cut[i]; });
    sec.dataset.cut = items.length > 0 && cut.every(Boolean) ? "all" : ""; // not even one fits: no heading either
  }

  function renderToday() {
    if (!today) return;
    $("waiting").textContent = today.waiting;
    $("kpi-waiting").dataset.level = today.waiting === 0 ? "ok" : today.longest_wait_seconds >= 60 || today.waiting >= 3 ? "bad" : "warn";
    $("answered").textContent = today.answered;
    const offered = today.answered + today.missed + today.voicemail;
    $("answer-ratio").textContent = offered ? Math.round((100 * today.answered) / offered) + " %" : "";
    $("missed").textContent = today.missed;
    $("missed-open").textContent = today.missed ? today.missed_not_called_back + " to call back" : "";
    $("kpi-missed").dataset.level = today.missed_not_called_back > 0 ? "bad" : "ok";
    $("calls-out").textContent = today.calls_out;

    const ms = today.missed_calls || [];
    $("missed-count").textContent = today.missed_not_called_back ? today.missed_not_called_back + " open" : ms.length;
    // Not yet called back first, newest first.
    const rows = [...ms].sort((a, b) => (a.called_back - b.called_back) || b.started_at.localeCompare(a.started_at));
    $("missed-list").replaceChildren(...rows.map((m) => {
      const li = el("li", "call");
      li.dataset.calledBack = m.called_back;
      li.append(el("span", "dir", "↙"));
      const p = el("div", "parties", m.name || m.number_formatted || "withheld");
      li.append(p);
      const anonymous = !m.number || m.number === "anonymous";
      li.append(el("span", "time", m.called_back ? "✓ called back " + hhmm(new Date(m.called_back_at)) : anonymous ? "no number" : "call back"));
      const offered = (m.user_ids || []).map((id) => userName({ source: "sipgate" }, id) || userName({ source: "sip" }, id)).filter(Boolean);
      const meta = [hhmm(new Date(m.started_at)), m.name ? m.number_formatted : "", offered.length ? "rang at " + list(offered, 3) : ""];
      li.append(el("div", "meta", meta.filter(Boolean).join(" · ")));
      return li;
    }));
    $("no-missed").hidden = ms.length > 0;
  }

  function callItem(c, live) {
    const li = el("li", "call");
    li.dataset.id = c.id;
    li.dataset.state = c.state;
    li.dataset.hold = c.on_hold;
    li.dataset.answered = !!c.answered_at;
    li.append(el("span", "dir", c.direction === "out" ? "↗" : c.direction === "in" ? "↙" : "•"));
    const pt = parties(c);
    const p = el("div", "parties");
    p.append(pt.from, el("span", "arrow", " → "), pt.to);
    li.append(p);
    const t = el("span", "time");
    if (live) {
      t.dataset.since = c.answered_at || c.started_at || "";
      t.textContent = duration(since(t.dataset.since));
    } else if (c.answered_at && c.ended_at) {
      t.textContent = duration((Date.parse(c.ended_at) - Date.parse(c.answered_at)) / 1000);
    } else {
      t.textContent = c.direction === "out" ? "not reached" : "missed";
      t.classList.add("missed-t");
    }
    li.append(t);
    const when = c.started_at ? hhmm(new Date(c.started_at)) : "";
    const meta = [when, pt.number];
    if (!live && c.cause_text) meta.push(c.cause_text);
    if (c.dtmf) meta.push("keys " + [...c.dtmf].join(" "));
    if (c.rule) meta.push("rule: " + c.rule);
    const m = el("div", "meta", meta.filter(Boolean).join(" · "));
    if (live) {
      const tag = c.on_hold ? "hold" : c.state;
      m.prepend(el("span", "tag " + tag, tag === "answered" ? "in call" : tag === "hold" ? "on hold" : "ringing"));
    }
    li.append(m);
    return li;
  }

  // tick updates the clock and, while live, every running duration once a
  // second. Offline, the durations stop where they were.
  function tick() {
    $("clock").textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
    if (stale && document.body.dataset.frozen) return;
    document.body.dataset.frozen = stale ? "1" : "";
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
    if (today) {
      $("longest-wait").textContent = today.longest_wait_since ? "longest " + duration(since(today.longest_wait_since)) : "";
    }
  }

  // A page left for another (or kept in the back-forward cache) lets go
  // of its stream, which would hold one of the browser's few connections
  // to the server; it comes back with a fresh snapshot.
  addEventListener("pagehide", () => {
    clearTimeout(retryTimer);
    clearTimeout(openTimer);
    if (source) source.close();
    source = null;
  });
  addEventListener("pageshow", (ev) => { if (ev.persisted) connect(); });

  setInterval(tick, 1000);
  tick();
  connect();
})();
