// The supervisor wallboard: login, the wallboard websocket (docs/wallboard.md), queue
// tiles, alerts, last-hour charts drawn on canvas, and the agent grid with its
// per-agent menu (away, available, log out). Plain JavaScript served by the hub: no
// build step, no chart library, nothing loaded from elsewhere. Everything shown is set
// with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const board = {
    me: null, // the /api/me answer: username, role, display_name, permissions, csrf_token
    socket: null,
    loggingOut: false,
    retryMs: 1000,
    view: null, // the last snapshot
    skew: 0, // this browser's clock minus the hub's, in seconds (from generated_at)
    tiles: new Map(), // queue -> {node, fields}
    charts: new Map(), // queue -> {figure, canvas}
    rows: new Map(), // agent_id -> {row, cells}
    menu: null, // {agentId, node, button} of the open actions menu
    ticker: null,
  };

  const STATE_WORDS = {
    available: "available", away: "away", reserved: "offered", busy: "on contact",
    wrap_up: "after-contact work", offline: "offline",
  };
  const SL_WORDS = { met: "target met", below: "below target", far_below: "far below target", none: "no answers yet" };

  // --- small helpers ------------------------------------------------------------------

  const { el, show, words, clock } = window.CtiHub;
  function percent(value) { return value === null || value === undefined ? "–" : `${Math.round(value)} %`; }
  function secs(value) { return value === null || value === undefined ? "–" : `${Math.round(value)} s`; }
  function hubNow() { return Date.now() / 1000 - board.skew; }
  function timeOfDay(epoch) {
    return new Date(epoch * 1000).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }
  function stateText(agent) {
    const text = STATE_WORDS[agent.state] || words(agent.state);
    return agent.state === "away" && agent.reason ? `${text} (${words(agent.reason)})` : text;
  }

  const api = window.CtiHub.apiFor(() => board.me);

  // --- login and who is here ----------------------------------------------------------

  async function start() {
    wire();
    const me = await api("/api/me");
    if (me.ok) enter(me.body);
    else showLogin("");
  }

  function showLogin(message) {
    board.me = null;
    stopTicker();
    show("login-view", true);
    show("board", false);
    show("not-supervisor-view", false);
    show("whoami", false);
    setConnection("offline", "Not connected");
    $("updated").textContent = "";
    $("login-error").textContent = message;
    $("username").focus();
  }

  async function logIn(event) {
    event.preventDefault();
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username || !password) {
      $("login-error").textContent = "Enter your username and password.";
      (username ? $("password") : $("username")).focus();
      return;
    }
    const answer = await api("/api/login", { method: "POST", json: { username, password } });
    $("password").value = "";
    if (!answer.ok) {
      const b = answer.body;
      $("login-error").textContent =
        b.error === "bad_credentials" ? "Wrong username or password."
        : b.retry_after ? `${b.detail || "Too many attempts"} (try again in ${b.retry_after} s)`
        : b.detail || `Login failed (${answer.status}).`;
      $("password").focus();
      return;
    }
    delete answer.body.token; // the HttpOnly cookie carries the session; the page keeps no token
    enter(answer.body);
  }

  function enter(me) {
    board.me = me;
    board.loggingOut = false;
    show("login-view", false);
    $("login-error").textContent = "";
    $("user-name").textContent = `${me.display_name || me.username} (${me.role})`;
    show("whoami", true);
    if (!(me.permissions || []).includes("wallboard.read")) {
      show("board", false);
      $("not-supervisor-text").textContent =
        `You are logged in as ${me.display_name || me.username}, with the ${me.role} role. ` +
        "The wallboard shows live queue and agent statistics to supervisors and administrators. " +
        ((me.permissions || []).includes("agent.desktop") ? "Your page is the agent desktop at /." : "");
      show("not-supervisor-view", true);
      setConnection("offline", "Not a supervisor");
      $("not-supervisor-title").focus();
      return;
    }
    show("not-supervisor-view", false);
    show("board", true);
    connect();
    startTicker();
  }

  async function logOut() {
    board.loggingOut = true;
    if (board.socket) board.socket.close(1000, "logout");
    await api("/api/logout", { method: "POST" });
    showLogin("You are logged out.");
  }

  // --- the websocket: snapshots only, from the hub --------------------------------------

  function setConnection(kind, text) {
    const node = $("connection");
    node.dataset.connection = kind;
    node.textContent = text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    setConnection("connecting", "Connecting…");
    // Same origin, so the browser sends the session cookie: no token in the URL.
    const socket = new WebSocket(`${scheme}://${location.host}/api/wallboard/ws`);
    board.socket = socket;
    socket.addEventListener("open", () => { board.retryMs = 1000; setConnection("online", "Live"); });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (_) { return; }
      if (message.type === "snapshot") render(message);
    });
    socket.addEventListener("close", (event) => closed(socket, event));
  }

  function closed(socket, event) {
    if (board.socket !== socket) return;
    board.socket = null;
    if (board.loggingOut || !board.me) return;
    if (event.code === 1008) { showLogin(`Your session ended: ${event.reason || "log in again"}.`); return; }
    // Back off (1, 2, 4, 8, 10 s...) so that a restarting hub is not hammered by every
    // wall screen at once; the figures stay up, marked stale, meanwhile.
    setConnection("reconnecting", "Connection lost, reconnecting…");
    const wait = board.retryMs;
    board.retryMs = Math.min(board.retryMs * 2, 10000);
    setTimeout(async () => {
      if (board.loggingOut || !board.me) return;
      const me = await api("/api/me").catch(() => ({ ok: false, status: 0 }));
      if (me.status === 401) { showLogin("Your session ended; log in again."); return; }
      if (board.me) connect();
    }, wait);
  }

  // --- rendering a snapshot -------------------------------------------------------------

  function render(view) {
    board.view = view;
    board.skew = Date.now() / 1000 - view.generated_at;
    $("updated").textContent = `Updated ${new Date(view.generated_at * 1000).toLocaleTimeString()}`;
    renderAlerts(view.alerts || []);
    renderTiles(view.queues || []);
    renderCharts(view);
    renderAgents(view.agents || []);
    tick();
  }

  function queueName(queue) {
    const tile = ((board.view && board.view.queues) || []).find((q) => q.queue === queue);
    return tile ? tile.name : queue;
  }

  function renderAlerts(alerts) {
    const box = $("alerts");
    box.replaceChildren(...alerts.map((a) => {
      const text = a.kind === "service_level_below_target"
        ? `${queueName(a.queue)}: service level ${percent(a.service_level)}, below its target of ${percent(a.target)} within ${secs(a.threshold_s)}`
        : `${queueName(a.queue)}: ${a.waiting === 1 ? "a contact has" : "contacts have"} waited longer than ${secs(a.threshold_s)}`;
      return el("p", { class: "alert", "data-severity": a.severity, "data-queue": a.queue, "data-kind": a.kind },
        el("span", { text }), el("span", { class: "when", text: a.since ? `since ${timeOfDay(a.since)}` : "" }));
    }));
    box.hidden = alerts.length === 0;
  }

  function figure(label, key, extraClass) {
    const value = el("dd", { "data-field": key });
    const note = el("span", { class: "note", "data-note": key });
    return { node: el("div", { class: `figure ${extraClass || ""}`.trim() }, el("dt", { text: label }), value, note), value, note };
  }

  function makeTile(q) {
    const f = {
      waiting: figure("Waiting", "waiting", "big waiting"),
      longest: figure("Longest wait", "longest_wait", "big"),
      sl: figure("Service level", "service_level"),
      asa: figure("Avg. speed of answer", "asa"),
      abandon: figure("Abandon rate", "abandon_rate"),
      handled: figure("Answered / abandoned", "answered"),
    };
    const title = el("h3", {}, el("span", { class: "queue-name" }), el("span", { class: "queue-id", text: q.queue }));
    const byState = el("ul", { class: "by-state", "aria-label": "Agents by state" });
    const node = el("article", { class: "tile", "data-queue": q.queue, "aria-label": `Queue ${q.name}` },
      title, el("dl", { class: "figures" }, Object.values(f).map((x) => x.node)), byState);
    return { node, f, title, byState };
  }

  function renderTiles(queues) {
    const box = $("tiles");
    const seen = new Set();
    for (const q of queues) {
      seen.add(q.queue);
      let tile = board.tiles.get(q.queue);
      if (!tile) { tile = makeTile(q); board.tiles.set(q.queue, tile); }
      box.append(tile.node); // keeps the order of the snapshot
      tile.node.dataset.sl = q.service_level_status;
      tile.title.firstChild.textContent = q.name;
      tile.f.waiting.value.textContent = String(q.waiting);
      tile.f.waiting.node.dataset.nonzero = String(q.waiting > 0);
      tile.f.longest.value.dataset.since = q.oldest_since === null ? "" : String(q.oldest_since);
      tile.f.longest.note.textContent = q.waiting ? "oldest contact waiting" : "nobody waiting";
      tile.f.sl.value.replaceChildren(percent(q.service_level), " ",
        el("span", { class: `sl-badge sl-${q.service_level_status}`, text: SL_WORDS[q.service_level_status] || words(q.service_level_status) }));
      tile.f.sl.note.textContent = `target ${percent(q.service_level_target)} within ${secs(q.service_level_threshold_s)}`;
      tile.f.asa.value.textContent = secs(q.asa_s);
      tile.f.asa.note.textContent = `last ${Math.round((board.view.window_s || 900) / 60)} min`;
      tile.f.abandon.value.textContent = percent(q.abandon_rate);
      tile.f.abandon.note.textContent = `last ${Math.round((board.view.window_s || 900) / 60)} min`;
      tile.f.handled.value.textContent = `${q.answered} / ${q.abandoned}`;
      tile.f.handled.note.textContent = `handled ${q.handled}`;
      const a = q.agents || {};
      tile.byState.replaceChildren(
        ...[["available", "available"], ["on_contact", "on contact"], ["after_contact_work", "after-contact work"],
          ["non_productive", "away"], ["online", "logged in"]].map(([key, label]) =>
          el("li", { "data-count": key }, el("strong", { text: String(a[key] || 0) }), ` ${label}`)));
    }
    for (const [queue, tile] of board.tiles) {
      if (!seen.has(queue)) { tile.node.remove(); board.tiles.delete(queue); }
    }
  }

  // --- charts ---------------------------------------------------------------------------

  function renderCharts(view) {
    const box = $("charts");
    const history = (view.history && view.history.queues) || {};
    const seen = new Set();
    for (const q of view.queues || []) {
      seen.add(q.queue);
      let chart = board.charts.get(q.queue);
      if (!chart) {
        const canvas = el("canvas", { role: "img" });
        chart = { figure: el("figure", { class: "chart", "data-queue": q.queue }, el("figcaption", {}), canvas), canvas };
        board.charts.set(q.queue, chart);
      }
      box.append(chart.figure);
      chart.figure.querySelector("figcaption").textContent = q.name;
      const samples = history[q.queue] || [];
      const most = samples.reduce((m, s) => Math.max(m, s.waiting_max), 0);
      chart.canvas.setAttribute("aria-label",
        `${q.name}, last hour: at most ${most} waiting; service level now ${percent(q.service_level)} against ${percent(q.service_level_target)}`);
      draw(chart.canvas, samples, q, view);
    }
    for (const [queue, chart] of board.charts) {
      if (!seen.has(queue)) { chart.figure.remove(); board.charts.delete(queue); }
    }
  }

  function draw(canvas, samples, q, view) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 320;
    const height = canvas.clientHeight || 140;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const styles = getComputedStyle(document.documentElement);
    const color = (name) => styles.getPropertyValue(name).trim();
    const left = 28, right = 34, top = 8, bottom = 18;
    const w = width - left - right, h = height - top - bottom;
    const span = (view.history && view.history.span_s) || 3600;
    const step = (view.history && view.history.sample_s) || 60;
    // The axis ends with the current minute, so that its bar is as wide as the others.
    const end = (Math.floor(view.generated_at / step) + 1) * step;
    const start = end - span;
    const x = (t) => left + ((t - start) / span) * w;
    const most = Math.max(1, ...samples.map((s) => s.waiting_max));
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = color("--muted");
    g.strokeStyle = color("--line");
    g.lineWidth = 1;
    // Frame and axis labels: waiting on the left, percent on the right, minutes below.
    g.strokeRect(left, top, w, h);
    g.textAlign = "right";
    g.fillText(String(most), left - 4, top + 9);
    g.fillText("0", left - 4, top + h);
    g.textAlign = "left";
    g.fillText("100%", left + w + 3, top + 9);
    g.fillText("0%", left + w + 3, top + h);
    g.textAlign = "center";
    for (const minutes of [60, 45, 30, 15, 0]) g.fillText(minutes ? `-${minutes} min` : "now", x(end - minutes * 60), height - 4);
    // Bars: the most contacts waiting in each minute.
    g.fillStyle = color("--accent");
    const barW = Math.max(1, (step / span) * w - 1);
    for (const s of samples) {
      if (!s.waiting_max) continue;
      const barH = (s.waiting_max / most) * h;
      const from = Math.max(left, x(s.t));
      g.fillRect(from, top + h - barH, Math.min(barW, left + w - from), barH);
    }
    // The service-level target, dashed, and the service level as a line.
    const y = (pct) => top + h - (pct / 100) * h;
    g.setLineDash([5, 4]);
    g.strokeStyle = color("--warn");
    g.beginPath();
    g.moveTo(left, y(q.service_level_target));
    g.lineTo(left + w, y(q.service_level_target));
    g.stroke();
    g.setLineDash([]);
    g.strokeStyle = color("--good");
    g.lineWidth = 2;
    g.beginPath();
    let drawing = false;
    for (const s of samples) {
      if (s.service_level === null || s.service_level === undefined) { drawing = false; continue; }
      const px = Math.max(left, x(s.t + step / 2));
      if (drawing) g.lineTo(px, y(s.service_level));
      else g.moveTo(px, y(s.service_level));
      drawing = true;
    }
    g.stroke();
  }

  // --- the agent grid -------------------------------------------------------------------

  function makeRow(agent) {
    const cells = {
      who: el("td", { class: "who" }),
      state: el("span", { class: "state" }),
      timer: el("td", { class: "timer" }),
      contact: el("td", {}),
      handled: el("td", { class: "num" }),
    };
    const button = el("button", {
      type: "button", class: "menu-button", "aria-haspopup": "menu", "aria-expanded": "false",
      onclick: () => toggleMenu(agent.agent_id),
    }, "Actions");
    cells.button = button;
    const row = el("tr", { "data-agent": agent.agent_id },
      cells.who, el("td", {}, cells.state), cells.timer, cells.contact, cells.handled,
      el("td", { class: "actions" }, button));
    return { row, cells };
  }

  function renderAgents(agents) {
    const body = $("agent-rows");
    const showOffline = $("show-offline").checked;
    const seen = new Set();
    let online = 0, available = 0, onContact = 0;
    for (const agent of agents) {
      seen.add(agent.agent_id);
      if (agent.state !== "offline") online += 1;
      if (agent.state === "available") available += 1;
      if (["reserved", "busy", "wrap_up"].includes(agent.state)) onContact += 1;
      let entry = board.rows.get(agent.agent_id);
      if (!entry) { entry = makeRow(agent); board.rows.set(agent.agent_id, entry); }
      const { row, cells } = entry;
      body.append(row);
      row.hidden = agent.state === "offline" && !showOffline && !(board.menu && board.menu.agentId === agent.agent_id);
      row.dataset.state = agent.state;
      cells.who.replaceChildren(el("strong", { text: agent.name }), el("small", { text: agent.agent_id }));
      cells.state.dataset.state = agent.state;
      cells.state.textContent = stateText(agent);
      cells.timer.dataset.since = agent.state_since === null ? "" : String(agent.state_since);
      const c = agent.contact;
      cells.contact.textContent = c ? `${words(c.channel || "contact")} · ${c.queue ? queueName(c.queue) : "no queue"}` +
        (c.answered_at ? ` · answered ${timeOfDay(c.answered_at)}` : " · offered") : "–";
      cells.handled.textContent = String(agent.handled);
      cells.button.setAttribute("aria-label", `Actions for ${agent.name}`);
      cells.button.disabled = agent.state === "offline";
    }
    for (const [agentId, entry] of board.rows) {
      if (!seen.has(agentId)) { entry.row.remove(); board.rows.delete(agentId); }
    }
    $("agent-counts").textContent = `${online} logged in · ${available} available · ${onContact} on contact`;
    const shown = [...board.rows.values()].some((entry) => !entry.row.hidden);
    let empty = body.querySelector("tr.empty");
    if (!shown && !empty) {
      empty = el("tr", { class: "empty" }, el("td", { colspan: "6", text: "No agent is logged in." }));
    }
    if (empty) { if (shown) empty.remove(); else body.append(empty); }
    if (board.menu) refreshMenu();
  }

  function toggleMenu(agentId) {
    const open = board.menu && board.menu.agentId === agentId;
    closeMenu(false);
    if (!open) openMenu(agentId);
  }

  function openMenu(agentId) {
    const entry = board.rows.get(agentId);
    if (!entry) return;
    const node = el("div", { class: "menu", role: "menu", "aria-label": `Change the state of ${agentId}` });
    node.addEventListener("keydown", menuKeys);
    entry.row.querySelector(".actions").append(node);
    entry.cells.button.setAttribute("aria-expanded", "true");
    board.menu = { agentId, node, button: entry.cells.button };
    refreshMenu();
    const first = node.querySelector("button:not(:disabled)");
    if (first) first.focus();
  }

  function refreshMenu() {
    const { agentId, node } = board.menu;
    const agent = ((board.view && board.view.agents) || []).find((a) => a.agent_id === agentId);
    if (!agent || agent.state === "offline") { closeMenu(false); return; }
    const item = (label, state, danger) => el("button", {
      type: "button", role: "menuitem", class: danger ? "danger" : null,
      disabled: state === agent.state && state !== "away" ? true : null,
      onclick: () => setAgentState(agent, state),
    }, label);
    const focused = document.activeElement && node.contains(document.activeElement) ? document.activeElement.textContent : null;
    node.replaceChildren(
      item("Set away", "away"),
      item("Set available", "available"),
      item("Log out", "offline", true));
    if (focused) for (const b of node.querySelectorAll("button")) if (b.textContent === focused) b.focus();
  }

  function closeMenu(returnFocus) {
    if (!board.menu) return;
    const { node, button } = board.menu;
    board.menu = null;
    node.remove();
    button.setAttribute("aria-expanded", "false");
    if (returnFocus) button.focus();
  }

  function menuKeys(event) {
    const items = [...board.menu.node.querySelectorAll("button:not(:disabled)")];
    const at = items.indexOf(document.activeElement);
    if (event.key === "Escape") { event.preventDefault(); closeMenu(true); }
    else if (event.key === "ArrowDown") { event.preventDefault(); items[(at + 1) % items.length].focus(); }
    else if (event.key === "ArrowUp") { event.preventDefault(); items[(at - 1 + items.length) % items.length].focus(); }
  }

  async function setAgentState(agent, state) {
    closeMenu(true);
    const status = $("grid-status");
    status.textContent = `Setting ${agent.name} ${state === "offline" ? "offline" : state}…`;
    const json = state === "away" ? { state, reason: "supervisor" } : { state };
    const answer = await api(`/api/agents/${encodeURIComponent(agent.agent_id)}/state`, { method: "POST", json });
    if (!answer.ok) {
      if (answer.status === 401) { showLogin("Your session ended; log in again."); return; }
      status.textContent = `Could not change ${agent.name}: ${answer.body.detail || `error ${answer.status}`}`;
      return;
    }
    const done = { offline: "logged out", away: "set away", available: "set available" }[state];
    status.textContent = answer.body.pending
      ? `${agent.name} will be ${done} when the current contact ends.`
      : `${agent.name} ${done}.`;
  }

  // --- time passing: counted up here, between snapshots ----------------------------------

  function tick() {
    const now = hubNow();
    for (const node of document.querySelectorAll("#board [data-since]")) {
      const since = node.dataset.since;
      node.textContent = since === "" ? (node.tagName === "DD" ? "00:00" : "–") : clock(now - Number(since));
    }
  }

  function startTicker() { stopTicker(); board.ticker = setInterval(tick, 500); }
  function stopTicker() { if (board.ticker) clearInterval(board.ticker); board.ticker = null; }

  // --- wiring ---------------------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", logIn);
    $("logout").addEventListener("click", logOut);
    $("show-offline").addEventListener("change", () => { if (board.view) renderAgents(board.view.agents || []); });
    document.addEventListener("click", (event) => {
      if (board.menu && !board.menu.node.contains(event.target) && event.target !== board.menu.button) closeMenu(false);
    });
    window.addEventListener("resize", () => { if (board.view) renderCharts(board.view); });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
