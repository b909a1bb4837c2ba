// The agent desktop: login, the agent websocket (docs/websocket.md), the offered call
// with its customer card, the call, the wrap-up, and customer search (docs/api.md).
// Plain JavaScript served by the hub: no build step, nothing loaded from elsewhere.
// Everything shown is set with textContent, never as HTML: CRM data is not markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const desk = {
    me: null, // the /api/me answer: username, role, display_name, permissions, csrf_token
    socket: null,
    loggingOut: false,
    retryMs: 1000,
    state: "offline",
    pop: null, // the screen_pop of the offer or call in hand
    offerTimer: null,
    call: null, // {contact_id, call_id, name, startedAt}
    callTimer: null,
    recording: { on: false, paused: false },
    wrapups: [], // contacts waiting for their wrap-up, oldest first
    dispositions: [], // from `hello`: the wrap-up codes this hub accepts
    picked: null, // the customer chosen among several matches of the offered number
    viewing: null, // the customer id shown in the search's customer view
    viewed: null, // that customer's profile, whose numbers the Call buttons dial
    outbound: false, // from `hello`: the hub has a trunk (Call buttons, transfer to a number)
    held: false, // the caller is on hold (from this desk or the agent's phone)
    stream: null, // from `hello`, with `seq`: where to resume after a dropped connection
    seq: null,
  };

  // --- small helpers ------------------------------------------------------------------

  const { el, show, say, words, when, clock } = window.CtiHub;
  const api = window.CtiHub.apiFor(() => desk.me);

  // --- login and who is here ----------------------------------------------------------

  async function start() {
    wire();
    const me = await api("/api/me");
    if (me.ok) enter(me.body);
    else showLogin("");
  }

  function showLogin(message) {
    desk.me = null;
    show("login-view", true);
    show("desk", false);
    show("not-agent-view", false);
    show("whoami", false);
    setConnection("offline", "Not connected");
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
    desk.me = me;
    desk.loggingOut = false;
    show("login-view", false);
    $("login-error").textContent = "";
    $("user-name").textContent = `${me.display_name || me.username} (${me.role})`;
    show("whoami", true);
    if (!(me.permissions || []).includes("agent.desktop")) {
      // Supervisors, QA and admins have their own tools; the websocket refuses them anyway.
      show("desk", false);
      $("not-agent-text").textContent =
        `You are logged in as ${me.display_name || me.username}, with the ${me.role} role. ` +
        "The agent desktop takes calls and is only for users with the agent role. " +
        "Log out and log in with an agent account to take calls.";
      if ((me.permissions || []).includes("wallboard.read")) {
        $("not-agent-text").append(" ", el("a", { href: "/wallboard", text: "Open the supervisor wallboard" }), ".");
      }
      show("not-agent-view", true);
      setConnection("offline", "Not an agent");
      $("not-agent-title").focus();
      return;
    }
    show("not-agent-view", false);
    show("desk", true);
    connect();
    $("state-select").focus();
  }

  async function logOut() {
    desk.loggingOut = true;
    if (desk.socket) desk.socket.close(1000, "logout");
    await api("/api/logout", { method: "POST" });
    resetCall();
    showLogin("You are logged out.");
  }

  // --- the websocket ------------------------------------------------------------------

  function setConnection(kind, text) {
    const node = $("connection");
    node.dataset.connection = kind;
    node.textContent = text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    setConnection("connecting", "Connecting…");
    // Same origin, so the browser sends the session cookie: no token in the URL. After a
    // drop, `resume` asks the hub for what was sent meanwhile (docs/websocket.md).
    const resume = desk.stream && desk.seq !== null ? `?resume=${encodeURIComponent(`${desk.stream}:${desk.seq}`)}` : "";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/agent${resume}`);
    desk.socket = socket;
    socket.addEventListener("open", () => { desk.retryMs = 1000; setConnection("online", "Connected"); });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (_) { return; }
      handle(message);
    });
    socket.addEventListener("close", (event) => closed(socket, event));
  }

  async function closed(socket, event) {
    if (desk.socket !== socket) return;
    desk.socket = null;
    if (desk.loggingOut || !desk.me) return;
    if (event.code === 1008) { showLogin(`Your session ended: ${event.reason || "log in again"}.`); return; }
    setConnection("reconnecting", "Connection lost, reconnecting…");
    const wait = desk.retryMs;
    desk.retryMs = Math.min(desk.retryMs * 2, 10000);
    setTimeout(async () => {
      if (desk.loggingOut || !desk.me) return;
      const me = await api("/api/me").catch(() => ({ ok: false, status: 0 }));
      if (me.status === 401) { showLogin("Your session ended; log in again."); return; }
      connect();
    }, wait);
  }

  function send(message) {
    if (!desk.socket || desk.socket.readyState !== WebSocket.OPEN) return false;
    desk.socket.send(JSON.stringify(message));
    return true;
  }

  function handle(message) {
    const data = message.data || {};
    if (typeof message.seq === "number" && message.type !== "hello") desk.seq = message.seq;
    switch (message.type) {
      case "hello": return hello(message);
      case "screen_pop": return offered(message);
      case "offer_withdrawn": return withdrawn(message);
      case "ok": return done(message);
      case "error": return failed(message);
      case "recording_status": return recordingIs(message.recording, message.paused);
      case "agent.state_changed": return stateIs(data.state, data.reason);
      case "call.answered":
        if (desk.call && desk.call.outbound && data.call_id === desk.call.call_id) return connected();
        if (desk.pop && data.call_id === desk.pop.call_id) startCall();
        return;
      case "dial_progress": return dialProgress(message);
      case "transfer_failed": if (ours(message)) transferFailed(message); return;
      case "call.ended": if (desk.call && (desk.call.call_id === null || data.call_id === desk.call.call_id)) endCall(); return;
      case "recording.started":
      case "recording.resumed": if (ours(data)) recordingIs(true, false); return;
      case "recording.paused": if (ours(data)) recordingIs(true, true); return;
      case "recording.stored": if (ours(data)) recordingIs(false, false); return;
      case "call.held": if (ours(data)) holdIs(true); return;
      case "call.resumed": if (ours(data)) holdIs(false); return;
      case "call.transferred": if (ours(data)) transferred(data); return;
      default: return;
    }
  }

  function ours(data) { return desk.call && (desk.call.call_id === null || data.call_id === desk.call.call_id); }

  function hello(message) {
    desk.stream = message.stream || null;
    desk.seq = typeof message.seq === "number" ? message.seq : null;
    if (!message.resumed && desk.pop && !desk.call && message.state !== "reserved") {
      // Away too long to replay what was missed, and the offer is no longer ours.
      stopCountdown();
      show("offer-panel", false);
      show("card-panel", false);
      desk.pop = null;
    }
    desk.dispositions = message.dispositions || [];
    desk.outbound = Boolean(message.outbound);
    for (const id of ["transfer-number", "transfer-number-label", "transfer-number-hint"]) show(id, desk.outbound);
    const targets = $("transfer-queue");
    targets.replaceChildren(...(message.transfer_queues || []).map((q) => el("option", { value: q, text: q })));
    const select = $("disposition");
    select.replaceChildren(el("option", { value: "", text: "Choose a disposition…" }),
      ...desk.dispositions.map((code) => el("option", { value: code, text: words(code) })));
    stateIs(message.state, null);
    if (message.state === "busy" && message.contact_id && !desk.call) {
      // A reload during a call: the card is gone, but the call can still be ended.
      desk.call = { contact_id: message.contact_id, call_id: null, name: "the caller", startedAt: Date.now() };
      showCall();
    }
  }

  // --- state --------------------------------------------------------------------------

  function stateIs(state, reason) {
    desk.state = state;
    const now = $("state-now");
    now.dataset.state = state;
    now.textContent = reason && state === "away" ? `away (${words(reason)})` : words(state);
    const wanted = state === "away" && reason ? `away:${reason}` : state;
    if ([...$("state-select").options].some((o) => o.value === wanted)) $("state-select").value = wanted;
  }

  function setState(event) {
    event.preventDefault();
    $("state-error").textContent = "";
    const [state, reason] = $("state-select").value.split(":");
    const message = { type: "set_state", state };
    if (reason) message.reason = reason;
    if (!send(message)) $("state-error").textContent = "Not connected: the state was not changed.";
  }

  // --- the offer ----------------------------------------------------------------------

  function offered(pop) {
    desk.pop = pop;
    desk.picked = null; // the customer the agent chose when several share the number
    const name = pop.customer ? pop.customer.name : pop.caller_name;
    $("offer-caller").textContent = `${name} · ${pop.caller_e164 || pop.caller}`;
    $("offer-why").textContent = whyYou(pop);
    $("offer-error").textContent = "";
    $("accept").disabled = false;
    $("reject").disabled = false;
    show("offer-panel", true);
    startCountdown(Number(pop.offer_timeout_s) || 20);
    showCard(pop);
    say(`Incoming call from ${name}. Accept or reject.`);
    const active = document.activeElement;
    // Take the focus only when the agent is not typing somewhere (notes, search).
    if (!active || active === document.body || active.tagName === "BUTTON" || active.tagName === "MAIN") $("accept").focus();
  }

  // Why routing chose this agent, in words (docs/routing.md: the screen pop's why_you).
  function whyYou(pop) {
    const why = pop.why_you || {};
    const parts = [`Queue ${pop.queue}`];
    if (why.preferred_agent) parts.push("you are the customer's account manager");
    const skills = (why.matched_skills || []).map(words).join(", ");
    if (skills) parts.push(`chosen for your skills: ${skills}`);
    if (why.step) parts.push(`widened after ${Math.round(why.step_after_s || 0)} s of waiting (${why.step_requirement || "step " + why.step})`);
    if ((why.rules || []).length) parts.push(`rules: ${why.rules.map(words).join(", ")}`);
    if (why.strategy) parts.push(words(why.strategy));
    return parts.join(" · ");
  }

  function startCountdown(seconds) {
    stopCountdown();
    const until = Date.now() + seconds * 1000;
    const progress = $("offer-progress");
    progress.max = seconds;
    const tick = () => {
      const left = Math.max(0, (until - Date.now()) / 1000);
      progress.value = left;
      $("offer-seconds").textContent = `${Math.ceil(left)} s`;
      progress.classList.toggle("urgent", left <= 5);
    };
    tick();
    desk.offerTimer = setInterval(tick, 250);
  }

  function stopCountdown() {
    if (desk.offerTimer) clearInterval(desk.offerTimer);
    desk.offerTimer = null;
  }

  function accept() {
    if (!desk.pop) return;
    $("accept").disabled = true;
    $("reject").disabled = true;
    if (!send({ type: "accept", contact_id: desk.pop.contact_id })) offerProblem("Not connected: could not accept.");
  }

  function reject() {
    if (!desk.pop) return;
    $("accept").disabled = true;
    $("reject").disabled = true;
    if (!send({ type: "reject", contact_id: desk.pop.contact_id })) offerProblem("Not connected: could not reject.");
  }

  function offerProblem(text) {
    $("offer-error").textContent = text;
    $("accept").disabled = false;
    $("reject").disabled = false;
  }

  function withdrawn(message) {
    if (!desk.pop || message.contact_id !== desk.pop.contact_id || desk.call) return;
    stopCountdown();
    show("offer-panel", false);
    show("card-panel", false);
    desk.pop = null;
    const why = { timeout: "you did not answer in time", abandoned: "the caller hung up" }[message.reason] || words(message.reason);
    say(`The call was withdrawn: ${why}.`);
    $("state-error").textContent = `Last offer withdrawn: ${why}.`;
  }

  function done(message) {
    if (message.request === "reject") {
      stopCountdown();
      show("offer-panel", false);
      show("card-panel", false);
      desk.pop = null;
    } else if (message.request === "wrap_up") {
      wrapupSaved(message);
    } else if (message.request === "transfer" && message.number && desk.call) {
      $("call-error").textContent = `Transferring to ${message.number}: the caller hears music until it answers.`;
    } else if (message.request === "pick_customer") {
      $("card-title").textContent = message.stored ? "Caller (customer saved on the call)" : "Caller (chosen)";
    }
  }

  function failed(message) {
    const text = message.detail || words(message.error);
    switch (message.request) {
      case "accept": case "reject": return offerProblem(text);
      case "wrap_up": return wrapupFailed(message);
      case "pick_customer": $("card-title").textContent = `Caller (not saved: ${text})`; return;
      case "set_state": $("state-error").textContent = text; return;
      default: $("call-error").textContent = text;
    }
  }

  // --- the call -----------------------------------------------------------------------

  function startCall() {
    const pop = desk.pop;
    stopCountdown();
    show("offer-panel", false);
    desk.call = {
      contact_id: pop.contact_id,
      call_id: pop.call_id,
      interaction_id: pop.interaction_id,
      name: pop.customer ? pop.customer.name : desk.picked ? desk.picked.name : pop.caller_name,
      caller: pop.caller_e164 || pop.caller,
      startedAt: Date.now(),
    };
    showCall();
    say(`Connected to ${desk.call.name}.`);
    $("hangup").focus();
  }

  function showCall() {
    $("call-with").textContent = desk.call.name;
    $("call-error").textContent = "";
    dialStatus("");
    recordingIs(false, false);
    holdIs(false);
    show("call-panel", true);
    const tick = () => { $("call-timer").textContent = clock((Date.now() - desk.call.startedAt) / 1000); };
    tick();
    desk.callTimer = setInterval(tick, 1000);
  }

  function recordingIs(on, paused) {
    desk.recording = { on: Boolean(on), paused: Boolean(paused) };
    const node = $("rec-indicator");
    node.dataset.rec = !on ? "off" : paused ? "paused" : "on";
    node.textContent = !on ? "not recording" : paused ? "paused (PCI)" : "recording";
    const toggle = $("rec-toggle");
    toggle.disabled = !on;
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    toggle.textContent = paused ? "Resume recording" : "Pause recording (PCI)";
  }

  function toggleRecording() {
    if (!desk.call) return;
    const type = desk.recording.paused ? "recording_resume" : "recording_pause";
    send({ type, contact_id: desk.call.contact_id });
  }

  function hangUp() {
    if (desk.call) send({ type: "hangup", contact_id: desk.call.contact_id });
  }

  function endCall() {
    const call = { ...desk.call, endedAt: Date.now() };
    resetCall();
    $("card-title").textContent = "Caller (call ended)";
    say(`The call with ${call.name} ended. Wrap up.`);
    if (call.interaction_id) {
      desk.wrapups.push(call);
      if (desk.wrapups.length === 1) showWrapup();
    }
  }

  function resetCall() {
    if (desk.callTimer) clearInterval(desk.callTimer);
    desk.callTimer = null;
    desk.call = null;
    desk.pop = null;
    stopCountdown();
    show("call-panel", false);
    show("offer-panel", false);
  }

  // --- wrap-up ------------------------------------------------------------------------

  function showWrapup() {
    const call = desk.wrapups[0];
    if (!call) { show("wrapup-form", false); return; }
    const started = new Date(call.startedAt).toLocaleTimeString(undefined, { timeStyle: "short" });
    $("wrapup-for").textContent =
      `Call with ${call.name} (${call.caller || "unknown number"}) at ${started}, ${clock((call.endedAt - call.startedAt) / 1000)} long`;
    $("disposition").value = "";
    $("notes").value = "";
    for (const id of ["disposition", "notes"]) fieldError(id, "");
    $("wrapup-save").disabled = false;
    show("wrapup-form", true);
    show("wrapup-panel", true);
    $("disposition").focus();
  }

  function fieldError(id, text) {
    $(`${id}-error`).textContent = text;
    if (text) $(id).setAttribute("aria-invalid", "true");
    else $(id).removeAttribute("aria-invalid");
  }

  function saveWrapup(event) {
    event.preventDefault();
    const call = desk.wrapups[0];
    if (!call) return;
    const disposition = $("disposition").value;
    fieldError("disposition", "");
    fieldError("notes", "");
    if (!disposition) { fieldError("disposition", "Choose a disposition."); $("disposition").focus(); return; }
    const message = { type: "wrap_up", interaction_id: call.interaction_id, disposition, notes: $("notes").value };
    if (!send(message)) { $("wrapup-status").textContent = "Not connected: the wrap-up was not saved."; return; }
    $("wrapup-save").disabled = true;
    $("wrapup-status").textContent = "Saving…";
  }

  function wrapupSaved(message) {
    const call = desk.wrapups[0];
    if (!call || call.interaction_id !== message.interaction_id) return;
    desk.wrapups.shift();
    $("wrapup-status").textContent = `Saved: ${words(message.disposition)} for ${call.name}.`;
    say("Wrap-up saved.");
    if (desk.wrapups.length) showWrapup();
    else show("wrapup-form", false);
    if (desk.viewing) viewCustomer(desk.viewing); // its history now shows the wrap-up
  }

  function wrapupFailed(message) {
    $("wrapup-save").disabled = false;
    const field = message.field === "notes" ? "notes" : message.field === "disposition" ? "disposition" : null;
    if (field) { fieldError(field, message.detail); $(field).focus(); }
    $("wrapup-status").textContent = `Not saved: ${message.detail || words(message.error)}`;
  }

  // --- the customer card --------------------------------------------------------------

  function showCard(pop) {
    const card = $("card");
    card.replaceChildren();
    show("matches", false);
    $("card-title").textContent = "Caller";
    if (pop.customer) {
      card.append(customerCard(pop.customer));
    } else if ((pop.matches || []).length) {
      $("match-list").replaceChildren(...pop.matches.map((m) => el("li", {},
        el("button", { type: "button", class: "choice", onclick: () => pickMatch(m.customer_id) },
          el("strong", { text: m.name }), ` · ${words(m.tier)} · ${m.language} · ${m.country} · KYC `,
          kycBadge(m.kyc_status)))));
      show("matches", true);
    } else {
      card.append(el("p", { class: "unknown", text: `Unknown caller ${pop.caller_e164 || pop.caller}. Search below if they give a name or account.` }));
    }
    if ((pop.ivr_path || []).length) {
      card.prepend(el("p", { class: "ivr", text: `The IVR collected: ${pop.ivr_path.map(words).join(" → ")}` }));
    }
    show("card-panel", true);
  }

  async function pickMatch(customerId) {
    const answer = await api(`/api/customers/${encodeURIComponent(customerId)}`);
    if (!answer.ok) { $("card").replaceChildren(el("p", { class: "error", text: answer.body.detail || "Could not load the customer." })); return; }
    show("matches", false);
    $("card").replaceChildren(customerCard(answer.body));
    if (desk.pop) {
      // The interaction is stored with this customer (docs/websocket.md, pick_customer).
      send({ type: "pick_customer", contact_id: desk.pop.contact_id, customer_id: customerId });
    }
    if (desk.pop && !desk.call) {
      desk.picked = answer.body;
      $("offer-caller").textContent = `${answer.body.name} · ${desk.pop.caller_e164 || desk.pop.caller}`;
    } else if (desk.call) {
      desk.call.name = answer.body.name;
      $("call-with").textContent = answer.body.name;
    }
  }

  function kycBadge(status) {
    const known = ["verified", "pending", "expired", "rejected", "not_started"];
    const kind = known.includes(status) ? status : "unknown";
    return el("span", { class: `kyc-badge kyc-${kind}`, "data-kyc": kind, text: words(status || "unknown") });
  }

  function customerCard(c) {
    const kyc = c.kyc || {};
    const edd = kyc.edd || { required: false, reasons: [] };
    const facts = [
      ["Tier", words(c.tier)], ["Language", c.language], ["Country", c.country],
      ["Account manager", c.account_manager || "none"], ["Email", c.email || "none"],
    ];
    return el("article", { class: "customer", "data-customer": c.customer_id },
      el("h3", { class: "customer-name", text: c.name }),
      el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
      el("div", { class: "kyc" },
        el("h4", { text: "KYC" }),
        el("p", {}, "Status ", kycBadge(kyc.status),
          kyc.risk_rating ? el("span", { class: `risk risk-${kyc.risk_rating}`, text: ` risk ${kyc.risk_rating}` }) : " · no risk rating"),
        el("p", { class: "muted", text: [
          kyc.verified_at ? `verified ${when(kyc.verified_at)}` : null,
          kyc.next_review_at ? `next review ${when(kyc.next_review_at)}` : null,
          kyc.document_type ? `${words(kyc.document_type)} ${kyc.document_number_masked || ""}` : null,
        ].filter(Boolean).join(" · ") })),
      edd.required
        ? el("div", { class: "edd", role: "note" },
            el("h4", { text: "Enhanced due diligence" }),
            el("ul", { class: "edd-reasons" }, (edd.reasons.length ? edd.reasons : ["required (no reason recorded)"])
              .map((r) => el("li", { text: words(r) }))))
        : el("p", { class: "muted", text: "No enhanced due diligence." }),
      el("h4", { text: "Trading accounts" }),
      (c.accounts || []).length
        ? el("table", { class: "accounts" },
            el("thead", {}, el("tr", {}, ["Account", "Platform", "Currency", "Balance", "Equity", "Status"].map((h) => el("th", { scope: "col", text: h })))),
            el("tbody", {}, c.accounts.map((a) => el("tr", {},
              [a.number || a.number_masked, a.platform, a.currency, a.balance, a.equity, a.status].map((v) => el("td", { text: v }))))))
        : el("p", { class: "muted", text: "No trading accounts." }),
      el("h4", { text: "Recent interactions" }),
      history(c.recent_interactions || []),
      el("h4", { text: "Open leads" }),
      (c.leads || []).length
        ? el("ul", { class: "leads" }, c.leads.map((l) => el("li", {},
            el("strong", { text: l.interest ? words(l.interest) : "lead" }), ` · ${words(l.status)} · from ${words(l.source)}`,
            l.owner ? ` · ${l.owner}` : "", ` · since ${when(l.created_at)}`)))
        : el("p", { class: "muted", text: "No open leads." }),
      el("h4", { text: "Open tasks" }),
      (c.open_tasks || []).length
        ? el("ul", { class: "tasks" }, c.open_tasks.map((t) => el("li", {},
            el("strong", { text: t.title }), ` · ${words(t.kind)}`, t.due_at ? ` · due ${when(t.due_at)}` : "", t.owner ? ` · ${t.owner}` : "")))
        : el("p", { class: "muted", text: "No open tasks." }));
  }

  function history(items) {
    if (!items.length) return el("p", { class: "muted", text: "No interactions yet." });
    return el("ul", { class: "history" }, items.map((i) => el("li", { "data-interaction": i.id },
      el("span", { class: "when", text: when(i.started_at) }),
      ` · ${words(i.channel)} · ${i.queue || "no queue"} · ${words(i.outcome)}`,
      i.agent_id ? ` · ${i.agent_id}` : "",
      i.disposition ? el("span", { class: "disposition", text: words(i.disposition) }) : null,
      i.notes ? el("p", { class: "notes", text: i.notes }) : null)));
  }

  // --- search -------------------------------------------------------------------------

  async function search(event) {
    event.preventDefault();
    const q = $("search-q").value.trim();
    const results = $("search-results");
    results.replaceChildren();
    if (!q) { $("search-status").textContent = "Type a phone number, email, account number or customer id."; return; }
    $("search-status").textContent = "Searching…";
    const answer = await api(`/api/customers?q=${encodeURIComponent(q)}`);
    if (!answer.ok) { $("search-status").textContent = answer.body.detail || `Search failed (${answer.status}).`; return; }
    const found = answer.body.customers || [];
    $("search-status").textContent = found.length ? `${found.length} found.` : "No customer found.";
    results.replaceChildren(...found.map((m) => el("li", {},
      el("button", { type: "button", class: "choice", onclick: () => viewCustomer(m.customer_id) },
        el("strong", { text: m.name }), ` · ${words(m.tier)} · ${m.country} · KYC `, kycBadge(m.kyc_status)))));
  }

  async function viewCustomer(customerId) {
    desk.viewing = customerId;
    const answer = await api(`/api/customers/${encodeURIComponent(customerId)}?recent=10`);
    const view = $("customer-view");
    desk.viewed = answer.ok ? answer.body : null;
    if (!answer.ok) { view.replaceChildren(el("p", { class: "error", text: answer.body.detail || "Could not load the customer." })); }
    else view.replaceChildren(dialButtons(answer.body), customerCard(answer.body));
    $("customer-title").textContent = answer.ok ? `Customer: ${answer.body.name}` : "Customer";
    show("customer-panel", true);
  }

  // One Call button per number on the card: the agent never types the customer's number.
  function dialButtons(c) {
    if (!desk.outbound) return el("p", { id: "customer-error", class: "error", role: "alert" });
    const phones = (c.phones || []).filter((p) => p.e164);
    return el("div", { class: "dial" },
      phones.length
        ? phones.map((p) => el("button", { type: "button", class: "primary", "data-dial": p.e164,
            "aria-label": `Call ${c.name} on ${p.e164} (${words(p.kind)})`, text: `Call ${p.e164} (${words(p.kind)})` }))
        : el("p", { class: "muted", text: "No phone number on record." }),
      el("p", { id: "customer-error", class: "error", role: "alert" }));
  }

  // --- wiring -------------------------------------------------------------------------

  function holdIs(held) {
    desk.held = held;
    $("hold-toggle").textContent = held ? "Resume" : "Hold";
    $("hold-toggle").setAttribute("aria-pressed", String(held));
    show("hold-indicator", held);
  }

  function toggleHold() {
    if (!desk.call) return;
    $("call-error").textContent = "";
    if (!send({ type: desk.held ? "unhold" : "hold", contact_id: desk.call.contact_id })) {
      $("call-error").textContent = "Not connected: could not change the hold.";
    }
  }

  function transfer(event) {
    event.preventDefault();
    const queue = $("transfer-queue").value;
    const number = $("transfer-number").value.trim();
    if (!desk.call || (!queue && !number)) return;
    $("call-error").textContent = "";
    const message = number ? { type: "transfer", contact_id: desk.call.contact_id, number }
      : { type: "transfer", contact_id: desk.call.contact_id, queue };
    if (!send(message)) $("call-error").textContent = "Not connected: could not transfer.";
  }

  function transferred(data) {
    $("transfer-number").value = "";
    say(`Transferred to ${data.to_queue || data.to_number}.`);
    endCall();
  }

  function transferFailed(message) {
    $("call-error").textContent =
      `The transfer to ${message.number} failed (${words(message.failure)}, ${message.status}): the caller is back with you.`;
    say("The transfer failed; the caller is back with you.");
  }

  // --- click-to-dial ----------------------------------------------------------------

  async function dial(customer, phone) {
    $("customer-error").textContent = "";
    if (desk.call || desk.pop) { $("customer-error").textContent = "Finish the call in hand first."; return; }
    const answer = await api("/api/calls/dial", { method: "POST", json: { customer_id: customer.customer_id, phone } });
    if (!answer.ok) {
      $("customer-error").textContent = answer.body.detail || `Could not dial (${answer.status}).`;
      return;
    }
    const placed = answer.body;
    desk.call = {
      contact_id: placed.contact_id, call_id: placed.call_id, interaction_id: placed.interaction_id,
      name: placed.name, caller: placed.number, startedAt: Date.now(), outbound: true, answered: false,
    };
    showCall();
    dialStatus(`Calling your phone first, then ${placed.name} on ${placed.number}…`);
    say(`Calling ${placed.name}. Your phone rings first.`);
    $("hangup").focus();
  }

  function dialStatus(text) {
    $("dial-status").textContent = text;
    show("dial-status", Boolean(text));
  }

  function dialProgress(message) {
    if (!desk.call || message.call_id !== desk.call.call_id) return;
    if (message.stage === "ringing") dialStatus(`${desk.call.name} is ringing…`);
    else if (message.stage === "failed") {
      const who = message.side === "agent" ? "Your phone" : desk.call.name;
      dialStatus(`${who}: ${words(message.failure)} (${message.status}). The call is over.`);
      say(`The call failed: ${words(message.failure)}.`);
    }
  }

  function connected() {
    desk.call.answered = true;
    desk.call.startedAt = Date.now(); // the timer counts the talk, as for an answered inbound call
    dialStatus("");
    say(`Connected to ${desk.call.name}.`);
  }

  function wire() {
    $("login-form").addEventListener("submit", logIn);
    $("logout").addEventListener("click", logOut);
    $("state-form").addEventListener("submit", setState);
    $("accept").addEventListener("click", accept);
    $("reject").addEventListener("click", reject);
    $("hangup").addEventListener("click", hangUp);
    $("rec-toggle").addEventListener("click", toggleRecording);
    $("hold-toggle").addEventListener("click", toggleHold);
    $("transfer-form").addEventListener("submit", transfer);
    $("wrapup-form").addEventListener("submit", saveWrapup);
    $("search-form").addEventListener("submit", search);
    $("customer-view").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-dial]");
      if (button && desk.viewed) dial(desk.viewed, button.dataset.dial);
    });
    $("not-agent-title").setAttribute("tabindex", "-1");
  }

  document.addEventListener("DOMContentLoaded", start);
})();
