// callstate team board: who waits (longest first), the calls going on,
// the team's lamps, the calls to return and today's numbers, kept up to
// date from the Server-Sent Events stream at api/stream and from
// api/today and api/missed. No dependencies.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("access_token");
  const wall = params.has("wall");
  const historySize = 20;
  const staleAfter = 3000;   // ms without the stream before the board greys out
  const retryEvery = 500;    // ms between reconnects while offline (a refused connection costs nothing)
  const openTimeout = 6000;  // ms a connection may take to open
  const tileNameEm = 13;     // a lamp tile's room for its name, in em of its font; longer names are shortened in the middle
  const lamps = new Map();   // "source/extension" -> lamp
  const calls = new Map();   // id -> call
  let today = null;          // api/today's answer
  let staleShown = "";       // the waiting callers shown with no news: tick draws the list again when one goes quiet
  let toReturn = null;       // api/missed?open=true's answer: the open calls to return, of any day
  let levels = {};           // thresholds: name -> {warn, bad}
  let audio = null;          // AudioContext once someone clicked (wall mode, sound on)
  const lastLevel = {};      // kpi id -> level drawn last, to sound when one turns red
  let source = null;
  let retryTimer = null, staleTimer = null, openTimer = null, todayTimer = null, renderTimer = null;
  let stale = false, offlineSince = null;
  let everLive = false, authChecked = false, signedOut = false; // signed out: the API answered 401
  const signedOutRetry = 30000; // ms between tries while signed out
  let lampShape = "";        // names and count the tiles were sized for
  let focusCall = params.get("call") || ""; // a call to show: ?call= (a tapped notification opens /board/?call=ID)
  let focusScrolled = false, snapshotSeen = false;

  const $ = (id) => document.getElementById(id);
  const offlineHint = $("offline-hint").textContent;
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const withToken = (path) => (token ? path + (path.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(token) : path);
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
    // The board keeps whole calls and lamps: the typed events would only
    // repeat them.
    const s = new EventSource(withToken("api/stream?types=call,lamp"));
    if (!window.boardStreamAt) window.boardStreamAt = performance.now();
    source = s;
    openTimer = setTimeout(() => source === s && lost(), openTimeout);
    s.onopen = () => {
      everLive = true;
      if (signedOut) {
        signedOut = false;
        $("offline-hint").textContent = offlineHint;
      }
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
      snapshotSeen = true;
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
    setConn("offline", signedOut ? "not signed in" : "offline, retrying…");
    if (!stale && !staleTimer) staleTimer = setTimeout(() => { staleTimer = null; setStale(true); }, staleAfter);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, signedOut ? signedOutRetry : retryEvery);
    if (!everLive && !authChecked) checkAuth();
  }

  // checkAuth asks once, when the stream never opened, whether the server
  // refuses this page its data: the installed app and an enrollment link
  // open /board/ without the API token. Then the board says so and tries
  // again only now and then.
  function checkAuth() {
    authChecked = true;
    fetch(withToken("api/lamps"), { cache: "no-store" }).then((res) => {
      if (res.status !== 401 || everLive) return;
      signedOut = true;
      setConn("offline", "not signed in");
      $("offline-hint").textContent = "this page has no access to the calls: open the board's link with its access token";
    }, () => {}); // offline: the stream says so
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
    const get = (path) => fetch(withToken(path), { headers: { Accept: "application/json" } })
      .then((res) => (res.ok ? res.json() : null)).catch(() => null); // offline: the stream says so
    const [t, m] = await Promise.all([get("api/today"), get("api/missed?open=true&limit=200")]);
    if (t) {
      today = t;
      today.receivedAt = Date.now();
      levels = (t.thresholds && t.thresholds.levels) || {};
      setupSound(!!(t.thresholds && t.thresholds.sound));
    }
    if (m) toReturn = m.missed || [];
    if (t || m) scheduleRender();
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

  // --- Who waits ---------------------------------------------------------

  // waitingCallers returns the callers waiting now, one per journey (a
  // group ring or a forward rings several legs for one caller), longest
  // wait first: incoming legs ringing of a journey nobody answered yet.
  function waitingCallers() {
    const byJourney = new Map();
    for (const c of calls.values()) {
      const jid = c.journey_id || c.source + "/" + c.key;
      let j = byJourney.get(jid);
      if (!j) byJourney.set(jid, (j = { id: jid, legs: [], ringing: [], answered: false, started: "" }));
      j.legs.push(c);
      if (c.active && (c.answered_at || c.state === "answered")) j.answered = true;
      if (c.active && c.state === "ringing" && c.direction !== "out") j.ringing.push(c);
    }
    const out = [];
    const staleAfter = today && today.ringing_stale_seconds ? today.ringing_stale_seconds : 0;
    for (const j of byJourney.values()) {
      if (j.answered || !j.ringing.length) continue;
      // The wait counts from the journey's first leg (before a forward).
      j.started = j.legs.map((c) => c.started_at || "").filter(Boolean).sort()[0] || "";
      // A sipgate caller with no news for SIPGATE_RINGING_STALE most likely
      // hung up long ago (a lost hangup): shown greyed, not counted.
      j.news = j.legs.map((c) => c.updated_at || "").filter(Boolean).sort().pop() || "";
      j.stale = staleAfter > 0 && j.ringing.every((c) => c.source === "sipgate") && j.news !== "" && since(j.news) >= staleAfter;
      out.push(j);
    }
    return out.sort((a, b) => (a.stale - b.stale) || a.started.localeCompare(b.started) || a.id.localeCompare(b.id));
  }

  // ringsAt names whom a waiting caller's legs ring at.
  function ringsAt(j) {
    const names = [];
    for (const c of j.ringing) {
      const ns = (c.users || []).length ? c.users : (c.user_ids || []).map((id) => userName(c, id)).filter(Boolean);
      if (!ns.length && c.extension) ns.push(userName(c, c.extension) || c.extension);
      ns.forEach((n) => { if (n !== "voicemail" && !names.includes(n)) names.push(n); });
    }
    return names;
  }

  function waitingItem(j) {
    const c = j.ringing[0];
    const li = el("li", "call waiting-call" + (j.stale ? " stale" : ""));
    li.dataset.journey = j.id;
    li.dataset.state = "ringing";
    const t = el("span", "time wait");
    if (j.stale) {
      t.textContent = "no news since " + hhmm(new Date(j.news));
    } else {
      t.dataset.since = j.started;
      t.textContent = duration(since(j.started));
    }
    li.append(t);
    const who = el("div", "who");
    const line1 = el("div", "line1");
    line1.append(nameEl("party caller", person(c.from_name, c.from_formatted, c.from)));
    if (c.from_name) line1.append(el("span", "number", c.from_formatted));
    who.append(line1);
    // Whom it rings at: each name shortened on its own, so that a group
    // ring names every person.
    const names = ringsAt(j);
    const rings = el("div", "rings");
    rings.append(el("span", "label", "rings at"));
    const shown = names.length ? names.slice(0, 3) : [person(c.to_name, c.to_formatted, c.to)];
    shown.forEach((n) => rings.append(nameEl("party ring", n)));
    if (names.length > 3) rings.append(el("span", "label", "+" + (names.length - 3)));
    who.append(rings);
    li.append(who);
    li.title = person(c.from_name, c.from_formatted, c.from) + " rings at " + names.join(", ");
    return li;
  }

  // --- Shortening --------------------------------------------------------

  // nameEl returns an element showing text whole, or shortened in the
  // middle where it does not fit (see fitNames), with the whole text as
  // its title.
  function nameEl(cls, text) {
    const e = el("span", cls + " fit", text);
    e.dataset.full = text;
    e.title = text;
    return e;
  }

  // middle shortens s to about n characters, keeping its start and its
  // end ("Friedrich-Wil…Hohenzollern"): the end tells long names with a
  // common start apart.
  function middle(s, n) {
    const cs = [...s];
    if (cs.length <= n) return s;
    const head = Math.ceil((n - 1) * 0.5), tail = n - 1 - head;
    return cs.slice(0, head).join("").trimEnd() + "…" + cs.slice(cs.length - tail).join("").trimStart();
  }

  // fitNames shortens every .fit element of root that does not fit its box
  // in the middle, as little as it must: all boxes are read first, then
  // the text measured on a canvas in each one's font, then written.
  let canvas = null;
  function fitNames(root) {
    const els = [...root.querySelectorAll(".fit")];
    els.forEach((e) => { e.textContent = e.dataset.full; });
    const boxes = els.map((e) => ({ e, w: e.clientWidth, over: e.scrollWidth > e.clientWidth + 1, font: "" }));
    canvas = canvas || document.createElement("canvas").getContext("2d");
    for (const b of boxes) {
      if (!b.over || b.w <= 0) continue;
      const cs = getComputedStyle(b.e);
      canvas.font = cs.fontWeight + " " + cs.fontSize + " " + cs.fontFamily;
      const full = b.e.dataset.full;
      let lo = 3, hi = [...full].length - 1;
      while (lo < hi) { // the longest shortening that fits
        const mid = Math.ceil((lo + hi) / 2);
        if (canvas.measureText(middle(full, mid)).width <= b.w - 1) lo = mid; else hi = mid - 1;
      }
      b.text = middle(full, lo);
    }
    boxes.forEach((b) => { if (b.text) b.e.textContent = b.text; });
    return boxes;
  }

  // --- Rendering ---------------------------------------------------------

  function render() {
    const t0 = performance.now();
    renderToday();
    const waiting = waitingCallers();
    const waitingIDs = new Set(waiting.map((j) => j.id));
    $("waiting-list").replaceChildren(...waiting.map(waitingItem));
    $("waiting-count").textContent = waiting.filter((j) => !j.stale).length;
    staleShown = waiting.filter((j) => j.stale).map((j) => j.id).join(" ");
    $("no-waiting").hidden = waiting.length > 0;
    const active = [...calls.values()].filter((c) => c.active && !waitingIDs.has(c.journey_id || c.source + "/" + c.key))
      .filter((c) => !(c.state === "ringing" && c.direction !== "out")) // a leg still ringing beside an answered one
      .sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""));
    $("active").replaceChildren(...active.map((c) => callItem(c, true)));
    $("active-count").textContent = active.length;
    $("no-active").hidden = active.length > 0;
    renderLamps();
    renderMissed();

    const ended = [...calls.values()].filter((c) => !c.active).sort(byEnd).slice(0, historySize);
    $("history").replaceChildren(...ended.map((c) => callItem(c, false)));
    $("no-history").hidden = ended.length > 0;
    fitNames(document.querySelector("main"));
    trim($("waiting-list"));
    trim($("active"));
    trim($("missed-list"));
    trim($("history"));
    tick();
    showFocus();
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
      line1.append(nameEl("name", lampName(l)));
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
    distinguish();
  }

  // distinguish gives lamps whose shortened names read alike their whole
  // name on two lines.
  function distinguish() {
    const names = [...document.querySelectorAll(".lamp .name")];
    names.forEach((n) => n.classList.remove("two"));
    const boxes = fitNames($("lamps"));
    const seen = new Map();
    boxes.forEach((b) => {
      const shown = b.e.textContent;
      if (!seen.has(shown)) seen.set(shown, []);
      seen.get(shown).push(b.e);
    });
    for (const [, es] of seen) {
      if (es.length < 2 || new Set(es.map((e) => e.dataset.full)).size < 2) continue;
      es.forEach((e) => { e.classList.add("two"); e.classList.remove("fit"); e.textContent = e.dataset.full; });
    }
  }

  // sizeTiles makes tiles as wide as the longest name needs, up to
  // tileNameEm (longer names are shortened in the middle), then, on a wide
  // screen, scales the lamps so that all of them fit without scrolling,
  // if they can at a readable size.
  let measure = null;
  function sizeTiles(names, count) {
    const ul = $("lamps");
    ul.style.setProperty("--lamp-font", "1em");
    const fs = parseFloat(getComputedStyle(ul).fontSize);
    measure = measure || document.createElement("canvas").getContext("2d");
    measure.font = "650 " + fs + "px " + getComputedStyle(document.body).fontFamily;
    let widest = 0;
    for (const n of names) {
      let w = Math.min(measure.measureText(n).width, tileNameEm * fs);
      if (count.get(n) > 1) w += fs * 3.2; // the extension beside it
      widest = Math.max(widest, w);
    }
    // name + dot, gap, padding and border; the second line needs ~12em.
    const em = Math.max(widest / fs + 2.6, 13.5);
    ul.style.setProperty("--tile-w", em.toFixed(2) + "em");
    fitLamps();
  }

  // fitLamps sizes the lamps on a wide screen so that all of them fit
  // without scrolling: the largest font (never below the readable
  // minimum) at which the rows fit the height with tiles at least
  // minTileEm wide; names longer than their tile are shortened in the
  // middle. Too many to fit readably: the grid scrolls.
  const minTileEm = 15;
  function fitLamps() {
    const ul = $("lamps"), box = $("lamps-box");
    if (getComputedStyle(box).overflowY !== "auto" || innerWidth < 1000 || !ul.firstElementChild) return; // narrow: the page scrolls
    const set = (k) => ul.style.setProperty("--lamp-font", (k / 20).toFixed(2) + "em");
    const want = parseFloat(ul.style.getPropertyValue("--tile-w")); // em the names ask for
    set(20);
    const cs = getComputedStyle(ul);
    const fs = parseFloat(cs.fontSize), gap = parseFloat(cs.rowGap) || 0;
    const tileH = ul.firstElementChild.getBoundingClientRect().height;
    const W = ul.clientWidth, H = box.clientHeight, N = ul.children.length;
    const minPx = parseFloat(getComputedStyle(document.body).getPropertyValue("--min-font")) || 0;
    const least = Math.max(Math.round((wall ? 0.55 : 0.7) * 20), Math.ceil((minPx / fs) * 20));
    const layout = (k, atLeast) => {
      const f = k / 20, g = gap * f;
      const rows = Math.floor((H + g) / (tileH * f + g));
      if (rows < 1) return null;
      // As many columns as the rows need, or as the names' width allows.
      const cols = Math.max(Math.ceil(N / rows), Math.floor((W + g) / (want * fs * f + g)));
      const tw = (W - (cols - 1) * g) / cols;
      return tw >= atLeast * fs * f ? { k, tw: tw / (fs * f) } : null;
    };
    // Every name whole if it can be, at the largest size; else names
    // shortened, in tiles at least minTileEm wide.
    let best = null;
    for (let k = 32; k >= least && !best; k--) best = layout(k, want);
    for (let k = 32; k >= least && !best; k--) best = layout(k, Math.min(minTileEm, want));
    if (!best) { // too many to fit readably: the grid scrolls
      set(20);
      return;
    }
    set(best.k);
    ul.style.setProperty("--tile-w", (best.tw - 0.02).toFixed(3) + "em");
    // Borders do not scale: step down while it still does not fit.
    let k = best.k;
    while (box.scrollHeight > box.clientHeight + 1 && k > least) set(--k);
  }
  let resizeTimer = null;
  addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { lampShape = ""; render(); }, 150);
  });

  // trim hides the rows of a list cut off at the bottom of its section, on
  // a screen that does not scroll, and says how many more there are.
  function trim(ul) {
    const sec = ul.closest("section");
    const items = [...ul.children].filter((li) => !li.classList.contains("more"));
    ul.querySelectorAll(".more").forEach((m) => m.remove());
    items.forEach((li) => { li.hidden = false; });
    sec.dataset.cut = "";
    if (getComputedStyle(sec).overflow !== "hidden") return;
    const bottom = sec.getBoundingClientRect().bottom;
    let cut = items.map((li) => li.getBoundingClientRect().bottom > bottom + 0.5); // read all, then write
    const n = cut.filter(Boolean).length;
    if (n > 0 && n < items.length) {
      // Room for the "+n more" line: one more row goes.
      const last = cut.indexOf(true) - 1;
      if (last >= 1) cut[last] = true;
      const more = el("li", "more", "+" + cut.filter(Boolean).length + " more");
      ul.append(more);
    }
    items.forEach((li, i) => { li.hidden = cut[i]; });
    sec.dataset.cut = items.length > 0 && cut.every(Boolean) ? "all" : ""; // not even one fits: no heading either
  }

  // --- Numbers and thresholds --------------------------------------------

  // level is "ok", "warn" or "bad" for value v of threshold name.
  function level(name, v) {
    const t = levels[name];
    if (!t || v === null || v === undefined) return "ok";
    if (name === "service_level") return v < t.bad ? "bad" : v < t.warn ? "warn" : "ok";
    return v >= t.bad ? "bad" : v >= t.warn ? "warn" : "ok";
  }
  const worst = (...ls) => (ls.includes("bad") ? "bad" : ls.includes("warn") ? "warn" : "ok");

  // setLevel colours a number, and sounds when it turns red.
  function setLevel(id, lv) {
    $(id).dataset.level = lv;
    if (lv === "bad" && lastLevel[id] !== undefined && lastLevel[id] !== "bad") beep();
    lastLevel[id] = lv;
  }

  function renderToday() {
    const waiting = waitingCallers().filter((j) => !j.stale);
    $("waiting").textContent = waiting.length;
    if (today) {
      $("answered").textContent = today.answered;
      const offered = today.answered + today.missed + today.voicemail;
      $("answer-ratio").textContent = offered ? Math.round((100 * today.answered) / offered) + " %" : "";
      const sl = today.service_level;
      $("service-level").textContent = sl === null || sl === undefined ? "–" : Math.round(100 * sl) + " %";
      $("sla").textContent = "in " + today.sla_seconds + " s";
      setLevel("kpi-sl", level("service_level", sl));
      $("abandoned").textContent = today.abandoned;
      $("short-abandoned").textContent = today.short_abandoned ? today.short_abandoned + " short" : "";
      setLevel("kpi-abandoned", level("abandoned", today.abandoned));
      $("missed-today").textContent = today.missed + today.voicemail ? today.missed + " missed · " + today.voicemail + " vm today" : "";
      $("calls-out").textContent = today.calls_out;
    }
    if (toReturn) {
      $("to-call-back").textContent = toReturn.length >= 200 ? "200+" : toReturn.length;
      setLevel("kpi-missed", level("to_call_back", toReturn.length));
    }
  }

  // renderMissed lists the open calls to return, of any day, newest
  // first: missed calls and voicemails until called back or marked done.
  function renderMissed() {
    const ms = toReturn || [];
    $("missed-count").textContent = ms.length;
    const day = new Date().toDateString();
    $("missed-list").replaceChildren(...ms.map((m) => {
      const li = el("li", "call");
      li.dataset.journey = m.journey_id;
      li.dataset.outcome = m.outcome;
      li.append(el("span", "dir", m.outcome === "voicemail" ? "✉" : "✕"));
      const who = el("div", "who");
      who.append(nameEl("party caller", m.name || m.number_formatted || "withheld"));
      const started = new Date(m.started_at);
      const when = started.toDateString() === day ? hhmm(started)
        : started.toLocaleDateString([], { weekday: "short", day: "numeric", month: "numeric" }) + " " + hhmm(started);
      const offered = (m.user_ids || []).map((id) => userName({ source: "sipgate" }, id) || userName({ source: "sip" }, id)).filter(Boolean);
      const meta = [when, m.outcome === "voicemail" ? "voicemail" : "", m.name ? m.number_formatted : "", offered.length ? "rang at " + list(offered, 2) : ""];
      who.append(el("div", "meta", meta.filter(Boolean).join(" · ")));
      li.append(who);
      const done = el("button", "done", "✓ done");
      done.type = "button";
      done.title = "Mark as done: no call back needed";
      done.addEventListener("click", () => markDone(m, done));
      li.append(done);
      return li;
    }));
    $("no-missed").hidden = ms.length > 0;
  }

  // markDone marks a call to return as done, in the name the lead gave
  // once (kept in this browser).
  async function markDone(m, button) {
    let by = localStorage.getItem("callstate.lead") || "";
    if (!by) {
      by = (prompt("Your name, to mark calls to return as done (kept in this browser):") || "").trim();
      if (!by) return;
      localStorage.setItem("callstate.lead", by);
    }
    button.disabled = true;
    try {
      const res = await fetch(withToken("api/missed/" + encodeURIComponent(m.journey_id) + "/done"), {
        method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify({ by }),
      });
      if (!res.ok) throw new Error(res.status + " " + (await res.text()));
      fetchToday();
    } catch (e) {
      button.disabled = false;
      button.textContent = "✓ failed, again?";
    }
  }

  // --- Sound (wall mode) -------------------------------------------------

  // setupSound offers sound on a wall screen when the server allows it:
  // browsers play sound only after a click on the page, so it says so.
  function setupSound(on) {
    const b = $("sound");
    if (!wall || !on || audio) { b.hidden = !(wall && on && !audio); return; }
    if (!b.dataset.wired) {
      b.dataset.wired = "1";
      const enable = () => {
        try {
          audio = new (window.AudioContext || window.webkitAudioContext)();
          audio.resume();
          b.hidden = true;
          beep();
        } catch (e) { b.textContent = "🔇 no sound in this browser"; }
        removeEventListener("click", enable);
      };
      addEventListener("click", enable);
    }
    b.hidden = false;
  }

  // beep plays two short tones, when sound is on.
  function beep() {
    if (!audio) return;
    [0, 0.3].forEach((at) => {
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880;
      g.gain.setValueAtTime(0.25, audio.currentTime + at);
      g.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + at + 0.25);
      o.connect(g).connect(audio.destination);
      o.start(audio.currentTime + at);
      o.stop(audio.currentTime + at + 0.26);
    });
  }

  // showFocus marks the call asked for (by its call id, the board's id or
  // its journey) wherever the board shows it, and scrolls to it once; a
  // call the board no longer holds gets a note instead.
  function showFocus() {
    document.querySelectorAll(".call.focus").forEach((e) => e.classList.remove("focus"));
    const note = $("call-note");
    if (!focusCall) {
      note.hidden = true;
      return;
    }
    const c = [...calls.values()].find((x) => x.call_id === focusCall || x.orig_call_id === focusCall ||
      String(x.id) === focusCall || x.journey_id === focusCall);
    const journey = c ? c.journey_id : focusCall;
    const els = [...document.querySelectorAll(".call[data-id], .call[data-journey]")].filter((e) =>
      (c && e.dataset.id === String(c.id)) || (journey && e.dataset.journey === journey));
    els.forEach((e) => e.classList.add("focus"));
    note.hidden = els.length > 0 || !snapshotSeen;
    note.textContent = "The call you opened is not on the board any more.";
    if (els.length && !focusScrolled) {
      focusScrolled = true;
      els[0].scrollIntoView({ block: "center" });
    }
  }
  addEventListener("callstate:open-call", (ev) => {
    focusCall = ev.detail || "";
    focusScrolled = false;
    scheduleRender();
  });

  function callItem(c, live) {
    const li = el("li", "call");
    li.dataset.id = c.id;
    li.dataset.state = c.state;
    li.dataset.hold = c.on_hold;
    li.dataset.answered = !!c.answered_at;
    li.append(el("span", "dir", c.direction === "out" ? "↗" : c.direction === "in" ? "↙" : "•"));
    const pt = parties(c);
    const p = el("div", "parties");
    const to = el("span", "to-wrap");
    to.append(el("span", "arrow", "→"), nameEl("party to", pt.to));
    p.append(nameEl("party from", pt.from), to);
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
    li.title = pt.from + " → " + pt.to + " · " + meta.filter(Boolean).join(" · ");
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
    if (waitingCallers().filter((j) => j.stale).map((j) => j.id).join(" ") !== staleShown) {
      render(); // calls tick again, with the list as it is now
      return;
    }
    $("clock").textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
    if (stale && document.body.dataset.frozen) return;
    document.body.dataset.frozen = stale ? "1" : "";
    // A duration that grows a digit (9:59 to 10:00) takes width from the
    // names beside it: those are fitted again, only then.
    const grown = new Set();
    document.querySelectorAll(".call .time[data-since]").forEach((t) => {
      const text = t.dataset.since ? duration(since(t.dataset.since)) : "";
      if (text.length !== t.textContent.length) grown.add(t.closest(".call"));
      t.textContent = text;
    });
    document.querySelectorAll(".lamp").forEach((li) => {
      const l = lamps.get(li.dataset.key);
      if (!l) return;
      const st = li.querySelector(".state");
      const text = lampText[l.lamp] || l.lamp;
      const c = (l.lamp === "busy" || l.lamp === "ringing" || l.lamp === "hold") ? lampCall(l) : null;
      st.textContent = c ? text + " " + duration(since(l.lamp === "ringing" ? c.started_at : (c.answered_at || c.started_at))) : text;
    });
    grown.forEach((li) => { if (li) fitNames(li); });
    const waits = [...document.querySelectorAll("#waiting-list .time[data-since]")].map((t) => since(t.dataset.since));
    const longest = waits.length ? Math.max(...waits) : 0;
    $("longest-wait").textContent = waits.length ? "longest " + duration(longest) : "";
    setLevel("kpi-waiting", worst(level("waiting", waits.length), level("longest_wait", waits.length ? longest : null)));
    document.querySelectorAll("#waiting-list .call:not(.stale)").forEach((li) => {
      const t = li.querySelector(".time");
      li.dataset.level = level("longest_wait", since(t.dataset.since));
    });
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
