// The csp room in a browser: messages live over the gateway's WebSocket, the agents
// and their states, a send box, pause/resume, earlier history, search, rooms.
//
// Everything shown comes from agents and people and is untrusted: it reaches the DOM
// through textContent (and markdown.js, which does the same), never innerHTML.  The
// session is an HttpOnly cookie the page cannot read; nothing is kept in storage.
// The DOM holds a window of at most WINDOW messages, so a room of 10,000 stays quick.
"use strict";

(function () {
  const WINDOW = 300; // messages in the DOM at most
  const STEP = 100; // messages added or dropped at an edge of the window at a time
  const PAGE = 200; // messages per request for history
  const AGENT_POLL_MS = 2000;
  const ROOM_POLL_MS = 10000; // a room made elsewhere shows up in the list
  const KINDS = ["chat", "direct", "system", "output"];
  const STATES = ["starting", "ready", "busy", "waiting", "paused", "exited", "offline"];

  const $ = (id) => document.getElementById(id);
  const state = {
    room: null, // null: every room
    rooms: [],
    agents: [],
    msgs: [], // this view's loaded messages, oldest first
    ids: new Set(),
    start: 0, // the DOM shows msgs[start, end)
    end: 0,
    cursor: 0, // the newest id this view has, for resuming the stream without a gap
    more: true, // earlier messages may exist on the server
    loading: false,
    ws: null,
    generation: 0, // bumps on a room switch, so an old socket's frames are ignored
    backoff: 250,
    loggedOut: false,
    stick: true, // the view follows the newest message (it was at the bottom)
    roomsLoaded: false,
  };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function notice(text) {
    const n = $("notice");
    n.textContent = text || "";
    n.hidden = !text;
  }

  function setConn(text, cls) {
    const c = $("conn");
    c.textContent = text;
    c.className = `conn ${cls}`;
  }

  function loggedOut() {
    state.loggedOut = true;
    setConn("logged out", "down");
    notice("Not logged in, or the session has ended. Run `cspctl web` for a new login link.");
  }

  async function api(method, path, body) {
    const opts = { method, headers: {}, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    if (resp.status === 401) loggedOut();
    if (!resp.ok) {
      const err = new Error((data && data.message) || `${resp.status} ${resp.statusText}`);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  // -- messages ------------------------------------------------------------------

  function timeOf(ts) {
    const d = new Date(ts);
    if (isNaN(d.getTime())) return String(ts);
    const today = new Date().toDateString() === d.toDateString();
    const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return today ? hm : `${d.toLocaleDateString()} ${hm}`;
  }

  function renderMessage(m) {
    const kind = KINDS.includes(m.kind) ? m.kind : "other";
    const li = el("li", `msg kind-${kind}${m.urgent ? " urgent" : ""}`);
    li.dataset.id = String(m.id);
    const head = el("div", "head");
    head.appendChild(el("span", "from", String(m.from)));
    const to = Array.isArray(m.to) ? m.to : [];
    if (to.length) head.appendChild(el("span", "to", "→ " + to.map((t) => "@" + t).join(" ")));
    if (state.room === null) head.appendChild(el("span", "room", "#" + m.room));
    head.appendChild(el("span", "kind", String(m.kind)));
    if (m.urgent) head.appendChild(el("span", "badge-urgent", "urgent"));
    const time = el("time", "ts", timeOf(m.ts));
    time.dateTime = String(m.ts);
    time.title = `${m.ts} · #${m.id}`;
    head.appendChild(time);
    li.appendChild(head);
    const body = el("div", "body");
    if (kind === "system") body.textContent = String(m.content);
    else body.appendChild(window.cspMarkdown.render(String(m.content)));
    li.appendChild(body);
    return li;
  }

  function list() {
    return $("messages");
  }

  function atBottom() {
    const t = $("timeline");
    return t.scrollHeight - t.scrollTop - t.clientHeight < 40;
  }

  function scrollToBottom() {
    const t = $("timeline");
    t.scrollTop = t.scrollHeight;
  }

  // show msgs[start, end) from scratch
  function renderWindow(start, end) {
    const ol = list();
    ol.replaceChildren();
    state.start = Math.max(0, start);
    state.end = Math.min(state.msgs.length, end);
    const frag = document.createDocumentFragment();
    for (let i = state.start; i < state.end; i++) frag.appendChild(renderMessage(state.msgs[i]));
    ol.appendChild(frag);
    updateOlder();
  }

  function updateOlder() {
    const older = $("older");
    if (state.start > 0 || state.more) older.textContent = state.loading ? "loading…" : "scroll up for earlier messages";
    else older.textContent = state.msgs.length ? "the beginning of the history" : "no messages yet";
  }

  function trimTop() {
    const ol = list();
    while (state.end - state.start > WINDOW) {
      const t = $("timeline");
      const first = ol.firstElementChild;
      const h = first.offsetHeight;
      ol.removeChild(first);
      state.start++;
      t.scrollTop -= h;
    }
  }

  function trimBottom() {
    const ol = list();
    while (state.end - state.start > WINDOW) {
      ol.removeChild(ol.lastElementChild);
      state.end--;
    }
  }

  // a live message: kept in order, shown if the window reaches the newest
  function add(m) {
    if (!m || typeof m.id !== "number" || state.ids.has(m.id)) return;
    if (state.room !== null && m.room !== state.room) return;
    state.ids.add(m.id);
    state.cursor = Math.max(state.cursor, m.id);
    const last = state.msgs.length ? state.msgs[state.msgs.length - 1].id : 0;
    if (m.id < last) { // out of order (never expected): put it in place, redraw
      state.msgs.push(m);
      state.msgs.sort((a, b) => a.id - b.id);
      renderWindow(state.start, state.end + 1);
      return;
    }
    const showing = state.end === state.msgs.length;
    const stick = state.stick;
    state.msgs.push(m);
    if (!showing) {
      $("jump").hidden = false;
      return;
    }
    list().appendChild(renderMessage(m));
    state.end = state.msgs.length;
    if (stick) {
      trimTop();
      scrollToBottom();
    } else {
      $("jump").hidden = false;
    }
    updateOlder();
  }

  // one page of earlier messages from the server into memory (the window keeps its place)
  async function fetchEarlier() {
    if (state.loading || !state.more) return;
    state.loading = true;
    updateOlder();
    try {
      const before = state.msgs.length ? state.msgs[0].id : state.cursor + 1;
      const q = new URLSearchParams({ before: String(before), limit: String(PAGE) });
      if (state.room !== null) q.set("room", state.room);
      const data = await api("GET", `/v1/web/earlier?${q}`);
      const fresh = data.messages.filter((m) => !state.ids.has(m.id));
      fresh.forEach((m) => state.ids.add(m.id));
      state.msgs = fresh.concat(state.msgs);
      state.start += fresh.length;
      state.end += fresh.length;
      state.more = data.more;
    } catch (e) {
      notice(`Could not load earlier messages: ${e.message}`);
    } finally {
      state.loading = false;
    }
  }

  // earlier messages at the top of the window: from memory first, then from the server
  async function showEarlier() {
    if (state.loading) return;
    if (state.start === 0) await fetchEarlier();
    if (state.start === 0) { updateOlder(); return; }
    const t = $("timeline");
    const from = Math.max(0, state.start - STEP);
    const oldHeight = t.scrollHeight;
    const frag = document.createDocumentFragment();
    for (let i = from; i < state.start; i++) frag.appendChild(renderMessage(state.msgs[i]));
    list().insertBefore(frag, list().firstChild);
    state.start = from;
    t.scrollTop += t.scrollHeight - oldHeight;
    trimBottom();
    updateOlder();
  }

  function showLater() {
    if (state.end >= state.msgs.length) return;
    const to = Math.min(state.msgs.length, state.end + STEP);
    const frag = document.createDocumentFragment();
    for (let i = state.end; i < to; i++) frag.appendChild(renderMessage(state.msgs[i]));
    list().appendChild(frag);
    state.end = to;
    trimTop();
    if (state.end === state.msgs.length) $("jump").hidden = true;
  }

  function jumpToNewest() {
    if (state.end < state.msgs.length) renderWindow(state.msgs.length - WINDOW, state.msgs.length);
    $("jump").hidden = true;
    scrollToBottom();
    state.stick = true;
  }

  function onScroll() {
    const t = $("timeline");
    state.stick = atBottom() && state.end === state.msgs.length;
    if (t.scrollTop < 200) showEarlier();
    if (t.scrollHeight - t.scrollTop - t.clientHeight < 200) showLater();
    if (atBottom() && state.end === state.msgs.length) $("jump").hidden = true;
  }

  // -- the live stream -------------------------------------------------------------

  function connect() {
    if (state.loggedOut) return;
    const generation = state.generation;
    const q = new URLSearchParams({ since: String(state.cursor) });
    if (state.room !== null) q.set("room", state.room);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/stream?${q}`);
    state.ws = ws;
    ws.onmessage = (event) => {
      if (generation !== state.generation) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (frame.type === "hello") {
        setConn("live", "up");
        const conn = $("conn"); // how many times the stream was opened: seen by the tests
        conn.dataset.opened = String(Number(conn.dataset.opened || 0) + 1);
        state.backoff = 250;
        notice("");
      } else if (frame.type === "message") {
        add(frame.message);
      } else if (frame.type === "error") {
        notice(`gateway: ${frame.message}`);
      }
    };
    ws.onclose = () => {
      if (generation !== state.generation) return;
      state.ws = null;
      setConn("reconnecting", "down");
      // a closed socket may be a logged-out session: ask once, then retry from the cursor
      api("GET", "/v1/health").catch(() => {}).finally(() => {
        if (state.loggedOut || generation !== state.generation) return;
        setTimeout(() => { if (generation === state.generation) connect(); }, state.backoff);
        state.backoff = Math.min(state.backoff * 2, 5000);
      });
    };
  }

  async function openRoom(room) {
    state.generation++;
    if (state.ws) state.ws.close();
    state.ws = null;
    state.room = room;
    state.msgs = [];
    state.ids = new Set();
    state.cursor = 0;
    state.more = true;
    setConn("connecting", "down");
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (room !== null) q.set("room", room);
    try {
      const data = await api("GET", `/v1/messages?${q}`);
      data.messages.forEach((m) => { state.ids.add(m.id); });
      state.msgs = data.messages;
      state.more = data.messages.length >= PAGE;
      const newest = state.msgs.length ? state.msgs[state.msgs.length - 1].id : 0;
      state.cursor = Math.max(Number(data.last_id) || 0, newest);
    } catch (e) {
      if (e.status !== 401) notice(`Could not load the history: ${e.message}`);
      return;
    }
    renderWindow(state.msgs.length - WINDOW, state.msgs.length);
    scrollToBottom();
    state.stick = true;
    connect();
  }

  // -- rooms -------------------------------------------------------------------------

  async function loadRooms() {
    const data = await api("GET", "/v1/rooms");
    state.rooms = data.rooms.map((r) => String(r.name));
    const select = $("room");
    select.replaceChildren();
    const all = el("option", null, "all rooms");
    all.value = "";
    select.appendChild(all);
    for (const name of state.rooms) {
      const opt = el("option", null, "#" + name);
      opt.value = name;
      select.appendChild(opt);
    }
    if (state.roomsLoaded) select.value = state.room === null ? "" : state.room;
    else select.value = state.rooms.includes(data.default) ? data.default : "";
    state.roomsLoaded = true;
    return select.value || null;
  }

  // -- agents ----------------------------------------------------------------------

  function renderAgents() {
    const ul = $("agent-list");
    ul.replaceChildren();
    for (const a of state.agents) {
      const st = STATES.includes(a.state) ? a.state : "offline";
      const li = el("li", `agent state-${st}`);
      li.dataset.name = String(a.name);
      const top = el("div", "agent-top");
      top.appendChild(el("span", "dot"));
      top.appendChild(el("span", "agent-name", String(a.name)));
      top.appendChild(el("span", "agent-state", st === "waiting" ? "waiting for you" : st));
      li.appendChild(top);
      const queued = Number(a.queue) || 0;
      const pending = Number(a.pending) || 0;
      const info = el("div", "agent-info",
        `#${a.room} · queue ${queued}${pending !== queued ? ` · pending ${pending}` : ""}`);
      if (a.reason) info.title = String(a.reason);
      li.appendChild(info);
      if (a.online) {
        const paused = st === "paused";
        const btn = el("button", "control", paused ? "resume" : "pause");
        btn.type = "button";
        btn.dataset.action = paused ? "resume" : "pause";
        btn.addEventListener("click", () => control(String(a.name), btn.dataset.action, btn));
        li.appendChild(btn);
      }
      ul.appendChild(li);
    }
    if (!state.agents.length) ul.appendChild(el("li", "empty", "no agents yet"));
  }

  async function loadAgents() {
    if (state.loggedOut) return;
    try {
      const data = await api("GET", "/v1/agents");
      state.agents = data.agents;
      renderAgents();
    } catch (e) {
      /* shown by the connection state; polled again */
    }
  }

  async function control(name, action, btn) {
    btn.disabled = true;
    try {
      await api("POST", `/v1/agents/${encodeURIComponent(name)}/control`, { action });
      notice("");
    } catch (e) {
      notice(`${action} ${name}: ${e.message}`);
    } finally {
      btn.disabled = false;
    }
    setTimeout(loadAgents, 150);
  }

  // -- sending, with @ completion ---------------------------------------------------

  function parseDraft(raw) {
    let text = raw.replace(/\s+$/, "");
    const to = [];
    let m;
    while ((m = /^\s*([@#][^\s]+)(\s+|$)/.exec(text))) {
      to.push(m[1]);
      text = text.slice(m[0].length);
    }
    let urgent = $("urgent").checked;
    if (text.startsWith("!")) {
      urgent = true;
      text = text.slice(1).replace(/^\s+/, "");
    }
    return { to, text, urgent };
  }

  async function send(event) {
    if (event) event.preventDefault();
    const box = $("text");
    const draft = parseDraft(box.value);
    if (!draft.text.trim()) return;
    const body = { to: draft.to.length ? draft.to : ["@all"], content: draft.text, urgent: draft.urgent };
    if (state.room !== null && !draft.to.some((t) => t.startsWith("#"))) body.room = state.room;
    $("send").disabled = true;
    try {
      await api("POST", "/v1/messages", body);
      box.value = "";
      $("urgent").checked = false;
      hideComplete();
      notice("");
    } catch (e) {
      notice(`Not sent: ${e.message}`);
    } finally {
      $("send").disabled = false;
      box.focus();
    }
  }

  const complete = { items: [], index: 0, start: 0 };

  function candidates(prefix) {
    const names = ["@all", ...state.agents.map((a) => "@" + a.name), ...state.rooms.map((r) => "#" + r)];
    return names.filter((n, i) => n.startsWith(prefix) && n !== prefix && names.indexOf(n) === i).slice(0, 8);
  }

  function hideComplete() {
    complete.items = [];
    $("complete").hidden = true;
  }

  function updateComplete() {
    const box = $("text");
    const before = box.value.slice(0, box.selectionStart);
    const m = /(^|\s)([@#][\w-]*)$/.exec(before);
    if (!m) { hideComplete(); return; }
    complete.items = candidates(m[2]);
    complete.start = before.length - m[2].length;
    complete.index = 0;
    drawComplete();
  }

  function drawComplete() {
    const box = $("complete");
    box.replaceChildren();
    if (!complete.items.length) { box.hidden = true; return; }
    complete.items.forEach((name, i) => {
      const opt = el("button", i === complete.index ? "opt active" : "opt", name);
      opt.type = "button";
      opt.setAttribute("role", "option");
      opt.addEventListener("mousedown", (e) => { e.preventDefault(); pick(i); });
      box.appendChild(opt);
    });
    box.hidden = false;
  }

  function pick(i) {
    const box = $("text");
    const name = complete.items[i];
    const end = box.selectionStart;
    box.value = box.value.slice(0, complete.start) + name + " " + box.value.slice(end);
    const caret = complete.start + name.length + 1;
    box.setSelectionRange(caret, caret);
    hideComplete();
    box.focus();
  }

  function onKey(event) {
    if (complete.items.length) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        const n = complete.items.length;
        complete.index = (complete.index + (event.key === "ArrowDown" ? 1 : n - 1)) % n;
        drawComplete();
        event.preventDefault();
        return;
      }
      if (event.key === "Tab" || (event.key === "Enter" && !event.shiftKey)) {
        pick(complete.index);
        event.preventDefault();
        return;
      }
      if (event.key === "Escape") { hideComplete(); return; }
    }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  }

  // -- search ----------------------------------------------------------------------

  async function search(event) {
    event.preventDefault();
    const text = $("search").value.trim();
    if (!text) { $("results").hidden = true; return; }
    const q = new URLSearchParams({ q: text });
    if (state.room !== null) q.set("room", state.room);
    try {
      const data = await api("GET", `/v1/web/search?${q}`);
      const ol = $("result-list");
      ol.replaceChildren();
      const found = data.messages.slice().reverse(); // newest first
      $("results-title").textContent = `${found.length}${found.length >= 100 ? "+" : ""} found for “${text}”`;
      for (const m of found) {
        const li = renderMessage(m);
        li.classList.add("result");
        li.addEventListener("click", () => reveal(m.id));
        ol.appendChild(li);
      }
      $("results").hidden = false;
    } catch (e) {
      notice(`Search failed: ${e.message}`);
    }
  }

  // show message `id` in the timeline, loading earlier pages until it is there
  async function reveal(id) {
    for (let n = 0; n < 100 && state.msgs.length && state.msgs[0].id > id && state.more; n++) {
      await fetchEarlier();
    }
    const idx = state.msgs.findIndex((m) => m.id === id);
    if (idx < 0) { notice(`message #${id} is not in this view`); return; }
    renderWindow(idx - WINDOW / 2, idx + WINDOW / 2);
    if (state.end < state.msgs.length) $("jump").hidden = false;
    const node = list().querySelector(`li[data-id="${id}"]`);
    if (node) {
      node.scrollIntoView({ block: "center" });
      node.classList.add("found");
      setTimeout(() => node.classList.remove("found"), 2000);
    }
    if (window.matchMedia("(max-width: 700px)").matches) $("results").hidden = true;
  }

  // -- start -------------------------------------------------------------------------

  async function start() {
    if (location.hash === "#expired") {
      history.replaceState(null, "", location.pathname);
      notice("That login link was used already or has expired. Run `cspctl web` for a new one.");
    }
    $("composer").addEventListener("submit", send);
    $("text").addEventListener("keydown", onKey);
    $("text").addEventListener("input", updateComplete);
    $("text").addEventListener("blur", () => setTimeout(hideComplete, 100));
    $("timeline").addEventListener("scroll", onScroll, { passive: true });
    window.addEventListener("resize", () => { if (state.stick) scrollToBottom(); });
    $("jump").addEventListener("click", jumpToNewest);
    $("search-form").addEventListener("submit", search);
    $("results-close").addEventListener("click", () => { $("results").hidden = true; });
    $("agents-toggle").addEventListener("click", () => document.body.classList.toggle("show-agents"));
    $("room").addEventListener("change", () => openRoom($("room").value || null));
    let room;
    try {
      room = await loadRooms();
    } catch (e) {
      if (e.status !== 401) notice(`Could not reach the gateway: ${e.message}`);
      return;
    }
    loadAgents();
    setInterval(loadAgents, AGENT_POLL_MS);
    setInterval(() => { if (!state.loggedOut) loadRooms().catch(() => {}); }, ROOM_POLL_MS);
    await openRoom(room);
  }

  window.addEventListener("DOMContentLoaded", start);
})();
