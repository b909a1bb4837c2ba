// The QA console: recording search, the player (audio element over the Range-capable
// audio route, a waveform drawn from the peaks with PCI pauses shaded and comments
// marked), evaluations on admin-defined forms, the CSV export, the forms and the access
// audit for admins; an agent sees only their own evaluations (docs/qa.md).
// Plain JavaScript served by the hub: no build step, nothing loaded from elsewhere.
// Everything shown is set with textContent, never as HTML: recorded data is not markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE_SIZE = 25;
  const PEAKS = 900; // one per canvas column

  const qa = {
    me: null, // the /api/me answer
    offset: 0,
    filters: {},
    recording: null, // the open recording's detail
    peaks: null,
    forms: [], // the active forms
    drawing: false,
  };

  // --- small helpers ------------------------------------------------------------------

  const { el, show, say, words } = window.CtiHub;
  function can(permission) { return Boolean(qa.me && (qa.me.permissions || []).includes(permission)); }
  const { when } = window.CtiHub;
  // m:ss, as players show it (recordings are minutes long).
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }
  function percent(score) { return score === null || score === undefined ? "–" : `${score.toFixed(1)} %`; }
  function problem(answer) {
    const b = answer.body || {};
    return (b.field ? `${b.field}: ` : "") + (b.detail || `failed (${answer.status})`);
  }

  const api = window.CtiHub.apiFor(() => qa.me);

  // --- login and who is here ----------------------------------------------------------

  async function start() {
    wire();
    const me = await api("/api/me");
    if (me.ok) enter(me.body);
    else showLogin("");
  }

  function showLogin(message) {
    qa.me = null;
    for (const id of ["mine-view", "review-view", "no-access-view", "whoami"]) show(id, false);
    show("login-view", true);
    $("login-error").textContent = message;
    $("username").focus();
  }

  async function logIn(event) {
    event.preventDefault();
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username || !password) {
      $("login-error").textContent = "Enter your username and password.";
      return;
    }
    const answer = await api("/api/login", { method: "POST", json: { username, password } });
    $("password").value = "";
    if (!answer.ok) {
      $("login-error").textContent = answer.body.error === "bad_credentials" ? "Wrong username or password." : problem(answer);
      return;
    }
    delete answer.body.token; // the HttpOnly cookie carries the session
    enter(answer.body);
  }

  function enter(me) {
    qa.me = me;
    show("login-view", false);
    $("user-name").textContent = `${me.display_name || me.username} (${me.role})`;
    show("whoami", true);
    if (can("recordings.play")) {
      show("review-view", true);
      show("tab-forms", can("qa.forms.manage"));
      show("tab-audit", can("recordings.audit"));
      selectTab("recordings");
      loadForms();
      search();
    } else if (can("evaluations.read_own")) {
      show("mine-view", true);
      loadMine();
    } else {
      $("no-access-text").textContent = `The ${me.role} role has no recordings to review.`;
      show("no-access-view", true);
    }
  }

  async function logOut() {
    stopPlayer();
    await api("/api/logout", { method: "POST" });
    showLogin("You are logged out.");
  }

  function selectTab(name) {
    for (const tab of ["recordings", "forms", "audit"]) {
      $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
      show(`${tab}-view`, tab === name);
    }
    if (name === "forms") loadFormsTable();
    if (name === "audit") loadAudit();
  }

  // --- search -------------------------------------------------------------------------

  function readFilters() {
    const filters = {};
    for (const input of $("search-form").querySelectorAll("input")) {
      const value = input.value.trim();
      if (value) filters[input.name] = value;
    }
    return filters;
  }

  function query(filters, extra) {
    const params = new URLSearchParams({ ...filters, ...(extra || {}) });
    const text = params.toString();
    return text ? `?${text}` : "";
  }

  async function search(event) {
    if (event) { event.preventDefault(); qa.offset = 0; }
    qa.filters = readFilters();
    $("export-link").href = `/api/recordings/export.csv${query(qa.filters)}`;
    for (const input of $("search-form").querySelectorAll("input")) input.removeAttribute("aria-invalid");
    const answer = await api(`/api/recordings${query(qa.filters, { offset: qa.offset, limit: PAGE_SIZE })}`);
    if (!answer.ok) {
      $("search-error").textContent = problem(answer);
      const bad = answer.body.field && $("search-form").querySelector(`[name="${answer.body.field}"]`);
      if (bad) { bad.setAttribute("aria-invalid", "true"); bad.focus(); }
      return;
    }
    $("search-error").textContent = "";
    renderResults(answer.body);
  }

  function renderResults(page) {
    const body = $("results").querySelector("tbody");
    body.replaceChildren();
    for (const row of page.recordings) {
      body.append(el("tr", { "data-recording": row.recording_id },
        el("td", { text: when(row.started_at) }),
        el("td", { text: clock(row.duration_s), class: "num" }),
        el("td", { text: row.queue || "" }),
        el("td", { text: row.agent_id || "" }),
        el("td", { text: row.customer_name || row.customer_id || "unknown" }),
        el("td", { text: words(row.disposition) }),
        el("td", { text: percent(row.score), class: "num" }),
        el("td", {}, el("button", { type: "button", text: "Open", "aria-label": `Open the recording of ${when(row.started_at)}`,
          onclick: () => openRecording(row.recording_id) })),
      ));
    }
    const first = page.offset + 1;
    $("results-status").textContent = page.recordings.length
      ? `Showing ${first}–${page.offset + page.recordings.length}${page.has_more ? " (more on the next page)" : ""}.`
      : "No recording matches.";
    $("page-prev").disabled = page.offset === 0;
    $("page-next").disabled = !page.has_more;
  }

  // --- the player ---------------------------------------------------------------------

  function stopPlayer() {
    const audio = $("audio");
    audio.pause();
    audio.removeAttribute("src");
    audio.load();
    qa.recording = null;
    qa.peaks = null;
  }

  async function openRecording(recordingId) {
    stopPlayer();
    const answer = await api(`/api/recordings/${encodeURIComponent(recordingId)}`);
    if (!answer.ok) { $("search-error").textContent = problem(answer); return; }
    const rec = answer.body;
    qa.recording = rec;
    show("player-panel", true);
    show("evaluate-panel", true);
    $("player-title").textContent = `Recording of ${when(rec.started_at)}`;
    $("player-meta").textContent = [
      rec.customer_name || "unknown caller", rec.queue && `queue ${rec.queue}`, rec.agent_id && `agent ${rec.agent_id}`,
      rec.disposition && words(rec.disposition), clock(rec.duration_s), rec.legal_hold ? "on legal hold" : null,
    ].filter(Boolean).join(" · ");
    $("player-error").textContent = "";
    $("pauses").textContent = rec.paused_intervals.length
      ? `Paused (PCI): ${rec.paused_intervals.map(([a, b]) => `${clock(a)}–${clock(b)}`).join(", ")}`
      : "No PCI pause.";
    $("download-link").href = rec.download_url;
    const audio = $("audio");
    audio.src = rec.audio_url;
    renderComments();
    show("comment-form", can("recordings.evaluate"));
    renderEvaluations();
    show("evaluation-form", can("recordings.evaluate") && qa.forms.length > 0);
    for (const input of $("form-questions").querySelectorAll("input")) input.checked = false;
    for (const id of ["evaluation-error", "evaluation-status", "comment-error"]) $(id).textContent = "";
    $("evaluation-summary").value = "";
    draw();
    $("player-title").setAttribute("tabindex", "-1");
    $("player-title").focus();
    say(`Recording opened: ${$("player-meta").textContent}`);
    const peaks = await api(`${rec.peaks_url}?n=${PEAKS}`);
    if (qa.recording !== rec) return;
    if (peaks.ok) qa.peaks = peaks.body;
    else $("player-error").textContent = `No waveform: ${problem(peaks)}`;
    draw();
  }

  function duration() {
    const audio = $("audio");
    return isFinite(audio.duration) && audio.duration > 0 ? audio.duration : (qa.recording ? qa.recording.duration_s : 0);
  }

  function draw() {
    const canvas = $("waveform");
    const ctx = canvas.getContext("2d");
    const width = canvas.width, height = canvas.height;
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = "#f3f5f8";
    ctx.fillRect(0, 0, width, height);
    const rec = qa.recording;
    const total = duration();
    if (!rec || !total) return;
    const x = (seconds) => (seconds / total) * width;
    // Paused stretches: hatched, so they read as "nothing here" without colour alone.
    for (const [a, b] of rec.paused_intervals) {
      const left = x(a), span = Math.max(1, x(b) - x(a));
      ctx.fillStyle = "rgba(240, 165, 0, 0.35)";
      ctx.fillRect(left, 0, span, height);
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, 0, span, height);
      ctx.clip();
      ctx.strokeStyle = "rgba(120, 80, 0, 0.45)";
      for (let hatch = left - height; hatch < left + span; hatch += 8) {
        ctx.beginPath();
        ctx.moveTo(hatch, height);
        ctx.lineTo(hatch + height, 0);
        ctx.stroke();
      }
      ctx.restore();
    }
    // Two lanes: the caller above, the agent below.
    if (qa.peaks && qa.peaks.n) {
      const lanes = qa.peaks.peaks;
      const laneHeight = height / lanes.length;
      lanes.forEach((peaks, lane) => {
        const middle = laneHeight * lane + laneHeight / 2;
        ctx.fillStyle = lane === 0 ? "#1f5fbf" : "#1b7f3b";
        const step = width / peaks.length;
        peaks.forEach((peak, i) => {
          const half = Math.max(0.5, peak * (laneHeight / 2 - 2));
          ctx.fillRect(i * step, middle - half, Math.max(1, step - 0.2), half * 2);
        });
        ctx.fillStyle = "#5b6470";
        ctx.font = "11px system-ui, sans-serif";
        ctx.fillText(qa.peaks.channels[lane] || "", 4, laneHeight * lane + 12);
      });
    }
    // Comment markers: a small flag at the top.
    ctx.fillStyle = "#b3261e";
    for (const comment of rec.comments) {
      const at = x(comment.offset_ms / 1000);
      ctx.beginPath();
      ctx.moveTo(at, 0);
      ctx.lineTo(at + 7, 0);
      ctx.lineTo(at, 10);
      ctx.closePath();
      ctx.fill();
      ctx.fillRect(at, 0, 1, height);
    }
    // The playhead.
    const now = $("audio").currentTime || 0;
    ctx.fillStyle = "#1a1d21";
    ctx.fillRect(Math.min(width - 2, x(now)), 0, 2, height);
    $("player-time").textContent = `${clock(now)} / ${clock(total)}`;
    $("comment-at").textContent = clock(now);
  }

  function animate() {
    if (qa.drawing) return;
    qa.drawing = true;
    const frame = () => {
      draw();
      if (!$("audio").paused) requestAnimationFrame(frame);
      else qa.drawing = false;
    };
    requestAnimationFrame(frame);
  }

  function seekTo(seconds) {
    const audio = $("audio");
    audio.currentTime = Math.max(0, Math.min(seconds, duration()));
    draw();
  }

  function clickWaveform(event) {
    if (!qa.recording) return;
    const canvas = $("waveform");
    const box = canvas.getBoundingClientRect();
    seekTo(((event.clientX - box.left) / box.width) * duration());
  }

  function keyWaveform(event) {
    const step = { ArrowLeft: -5, ArrowRight: 5 }[event.key];
    if (step === undefined || !qa.recording) return;
    event.preventDefault();
    seekTo(($("audio").currentTime || 0) + step);
  }

  // --- comments -----------------------------------------------------------------------

  function renderComments() {
    const list = $("comments");
    list.replaceChildren();
    for (const comment of qa.recording.comments) {
      list.append(el("li", {},
        el("button", { type: "button", class: "at", text: clock(comment.offset_ms / 1000),
          "aria-label": `Play from ${clock(comment.offset_ms / 1000)}`, onclick: () => seekTo(comment.offset_ms / 1000) }),
        " ", el("span", { class: "comment-text", text: comment.text }),
        " ", el("span", { class: "muted", text: `— ${comment.author}, ${when(comment.created_at)}` }),
      ));
    }
    if (!qa.recording.comments.length) list.append(el("li", { class: "muted", text: "No comments yet." }));
  }

  async function addComment(event) {
    event.preventDefault();
    const rec = qa.recording;
    const text = $("comment-text").value.trim();
    if (!text) { $("comment-error").textContent = "Write the comment first."; $("comment-text").focus(); return; }
    const offset = Math.round(($("audio").currentTime || 0) * 1000);
    const answer = await api(`/api/recordings/${encodeURIComponent(rec.recording_id)}/comments`, {
      method: "POST", json: { offset_ms: Math.min(offset, Math.round(rec.duration_s * 1000)), text },
    });
    if (!answer.ok) { $("comment-error").textContent = problem(answer); return; }
    $("comment-error").textContent = "";
    $("comment-text").value = "";
    rec.comments.push(answer.body);
    rec.comments.sort((a, b) => a.offset_ms - b.offset_ms || a.id - b.id);
    renderComments();
    draw();
    say(`Comment added at ${clock(answer.body.offset_ms / 1000)}.`);
  }

  // --- evaluations --------------------------------------------------------------------

  async function loadForms() {
    const answer = await api("/api/qa/forms");
    qa.forms = answer.ok ? answer.body.forms : [];
    const select = $("form-select");
    select.replaceChildren(...qa.forms.map((f) => el("option", { value: f.id, text: `${f.name} (version ${f.version})` })));
    renderQuestions();
    if (qa.recording) show("evaluation-form", can("recordings.evaluate") && qa.forms.length > 0);
  }

  function chosenForm() {
    return qa.forms.find((f) => String(f.id) === $("form-select").value) || null;
  }

  function renderQuestions() {
    const holder = $("form-questions");
    holder.replaceChildren();
    const form = chosenForm();
    if (!form) return;
    for (const section of form.sections) {
      const box = el("fieldset", { class: "section" }, el("legend", { text: `${section.title} (weight ${section.weight})` }));
      for (const question of section.questions) {
        const choices = question.kind === "yes_no"
          ? [["yes", "Yes"], ["no", "No"]]
          : Array.from({ length: question.scale_max }, (_, i) => [String(i + 1), String(i + 1)]);
        if (question.na_allowed) choices.push(["na", "N/A"]);
        const group = el("fieldset", { class: "question", id: `question-${question.id}` },
          el("legend", { text: question.text }),
          choices.map(([value, label]) => el("label", { class: "choice-inline" },
            el("input", { type: "radio", name: `q-${question.id}`, value }), ` ${label}`)),
        );
        box.append(group);
      }
      holder.append(box);
    }
  }

  function renderEvaluations() {
    const list = $("evaluations");
    list.replaceChildren();
    for (const evaluation of qa.recording.evaluations) {
      list.append(el("li", {},
        el("strong", { text: percent(evaluation.score) }),
        ` ${evaluation.form_name} v${evaluation.form_version} by ${evaluation.evaluator}, ${when(evaluation.created_at)}`,
        evaluation.summary ? el("p", { class: "muted", text: evaluation.summary }) : null,
      ));
    }
    if (!qa.recording.evaluations.length) list.append(el("li", { class: "muted", text: "Not evaluated yet." }));
  }

  async function saveEvaluation(event) {
    event.preventDefault();
    const form = chosenForm();
    const rec = qa.recording;
    if (!form || !rec) return;
    for (const node of $("form-questions").querySelectorAll(".question")) node.classList.remove("invalid");
    const answers = {};
    for (const section of form.sections) {
      for (const question of section.questions) {
        const picked = $("form-questions").querySelector(`input[name="q-${question.id}"]:checked`);
        if (!picked) {
          $("evaluation-error").textContent = `Answer “${question.text}”.`;
          $(`question-${question.id}`).classList.add("invalid");
          $(`question-${question.id}`).querySelector("input").focus();
          return;
        }
        answers[question.id] = question.kind === "scale" && picked.value !== "na" ? Number(picked.value) : picked.value;
      }
    }
    const summary = $("evaluation-summary").value.trim();
    const answer = await api("/api/evaluations", {
      method: "POST", json: { recording_id: rec.recording_id, form_id: form.id, answers, summary: summary || null },
    });
    if (!answer.ok) {
      $("evaluation-error").textContent = problem(answer);
      const id = String(answer.body.field || "").replace(/^answers\./, "");
      if ($(`question-${id}`)) $(`question-${id}`).classList.add("invalid");
      return;
    }
    $("evaluation-error").textContent = "";
    $("evaluation-status").textContent = `Saved: score ${percent(answer.body.score)}.`;
    rec.evaluations.unshift(answer.body);
    renderEvaluations();
    search(); // the result table's score column follows
    $("evaluation-summary").value = "";
    for (const input of $("form-questions").querySelectorAll("input")) input.checked = false;
  }

  // --- an agent's own evaluations -----------------------------------------------------

  async function loadMine() {
    const answer = await api("/api/evaluations?agent=me");
    const list = $("mine-list");
    list.replaceChildren();
    if (!answer.ok) { $("mine-status").textContent = problem(answer); return; }
    const evaluations = answer.body.evaluations;
    $("mine-status").textContent = evaluations.length ? `${evaluations.length} evaluation(s) of your calls.` : "None of your calls has been evaluated yet.";
    for (const evaluation of evaluations) {
      list.append(el("li", {}, el("button", {
        type: "button", class: "choice",
        text: `${when(evaluation.recording_started_at)} · ${evaluation.form_name} · ${percent(evaluation.score)}`,
        onclick: () => openMine(evaluation.id),
      })));
    }
  }

  async function openMine(evaluationId) {
    const answer = await api(`/api/evaluations/${evaluationId}`);
    if (!answer.ok) { $("mine-status").textContent = problem(answer); return; }
    const evaluation = answer.body;
    const holder = $("mine-detail");
    holder.replaceChildren(
      el("p", { class: "big", text: `Score ${percent(evaluation.score)}` }),
      el("p", { class: "muted", text: `${evaluation.form_name} (version ${evaluation.form_version}), by ${evaluation.evaluator}, ${when(evaluation.created_at)}` }),
      evaluation.summary ? el("p", { class: "summary", text: evaluation.summary }) : "",
      ...evaluation.form.sections.map((section) => el("section", { class: "section" },
        el("h3", { text: `${section.title}: ${percent(evaluation.section_scores[section.id])}` }),
        el("dl", { class: "facts" }, section.questions.map((q) => [
          el("dt", { text: q.text }),
          el("dd", { text: words(String(evaluation.answers[q.id] === "na" ? "not applicable" : evaluation.answers[q.id])) + (q.kind === "scale" && evaluation.answers[q.id] !== "na" ? ` of ${q.scale_max}` : "") }),
        ])),
      )),
    );
    show("mine-detail-panel", true);
  }

  // --- forms (admins) -----------------------------------------------------------------

  const EXAMPLE_FORM = {
    name: "Sales call",
    sections: [
      { id: "opening", title: "Opening", weight: 1, questions: [
        { id: "greeting", text: "Greeted the caller by name", kind: "yes_no", weight: 2 },
        { id: "rapport", text: "Built rapport", kind: "scale", scale_max: 5, weight: 1, na_allowed: true },
      ] },
      { id: "compliance", title: "Compliance", weight: 3, questions: [
        { id: "risk_warning", text: "Read the risk warning", kind: "yes_no", weight: 1, na_allowed: true },
      ] },
    ],
  };

  async function loadFormsTable() {
    if (!$("form-json").value) $("form-json").value = JSON.stringify(EXAMPLE_FORM, null, 2);
    const answer = await api("/api/qa/forms?all=true");
    const body = $("forms-table").querySelector("tbody");
    body.replaceChildren();
    if (!answer.ok) { $("form-error").textContent = problem(answer); return; }
    for (const form of answer.body.forms) {
      const count = form.sections.reduce((n, s) => n + s.questions.length, 0);
      body.append(el("tr", {},
        el("td", { text: form.name }), el("td", { text: form.version, class: "num" }), el("td", { text: count, class: "num" }),
        el("td", { text: form.active ? "active" : "retired" }),
        el("td", {}, el("button", {
          type: "button", text: form.active ? "Retire" : "Make active",
          onclick: async () => {
            const done = await api(`/api/qa/forms/${form.id}/${form.active ? "deactivate" : "activate"}`, { method: "POST" });
            $("form-error").textContent = done.ok ? "" : problem(done);
            loadFormsTable();
            loadForms();
          },
        })),
      ));
    }
  }

  async function saveForm() {
    let definition;
    try { definition = JSON.parse($("form-json").value); } catch (error) {
      $("form-error").textContent = `The definition is not valid JSON: ${error.message}`;
      return;
    }
    const answer = await api("/api/qa/forms", { method: "POST", json: definition });
    if (!answer.ok) { $("form-error").textContent = problem(answer); $("form-status").textContent = ""; return; }
    $("form-error").textContent = "";
    $("form-status").textContent = `Saved ${answer.body.name}, version ${answer.body.version}.`;
    loadFormsTable();
    loadForms();
  }

  // --- the audit (admins) -------------------------------------------------------------

  async function loadAudit(event) {
    if (event) event.preventDefault();
    const filters = {};
    for (const input of $("audit-form").querySelectorAll("input")) if (input.value.trim()) filters[input.name] = input.value.trim();
    const answer = await api(`/api/recordings/audit${query(filters)}`);
    const body = $("audit-table").querySelector("tbody");
    body.replaceChildren();
    if (!answer.ok) { $("audit-error").textContent = problem(answer); return; }
    $("audit-error").textContent = "";
    for (const entry of answer.body.entries) {
      body.append(el("tr", {},
        el("td", { text: when(entry.at) }), el("td", { text: entry.actor }), el("td", { text: entry.action }),
        el("td", { class: "mono", text: entry.recording_id }), el("td", { text: entry.client || "" }),
      ));
    }
    if (!answer.body.entries.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "Nothing recorded." })));
  }

  // --- wiring -------------------------------------------------------------------------

  function wire() {
    $("login-form").addEventListener("submit", logIn);
    $("logout").addEventListener("click", logOut);
    $("search-form").addEventListener("submit", search);
    $("page-prev").addEventListener("click", () => { qa.offset = Math.max(0, qa.offset - PAGE_SIZE); search(); });
    $("page-next").addEventListener("click", () => { qa.offset += PAGE_SIZE; search(); });
    $("tab-recordings").addEventListener("click", () => selectTab("recordings"));
    $("tab-forms").addEventListener("click", () => selectTab("forms"));
    $("tab-audit").addEventListener("click", () => selectTab("audit"));
    const audio = $("audio");
    audio.addEventListener("play", () => { $("play-toggle").textContent = "Pause"; animate(); });
    audio.addEventListener("pause", () => { $("play-toggle").textContent = "Play"; });
    $("play-toggle").addEventListener("click", () => {
      if (!qa.recording) return;
      if (audio.paused) audio.play().catch((error) => { $("player-error").textContent = `Cannot play: ${error.message}`; });
      else audio.pause();
    });
    $("back-5").addEventListener("click", () => seekTo((audio.currentTime || 0) - 5));
    $("forward-5").addEventListener("click", () => seekTo((audio.currentTime || 0) + 5));
    audio.addEventListener("seeked", draw);
    audio.addEventListener("timeupdate", () => { if (audio.paused) draw(); });
    audio.addEventListener("loadedmetadata", draw);
    audio.addEventListener("error", () => {
      if (qa.recording) $("player-error").textContent = "The recording could not be played.";
    });
    const canvas = $("waveform");
    canvas.tabIndex = 0;
    canvas.addEventListener("click", clickWaveform);
    canvas.addEventListener("keydown", keyWaveform);
    $("comment-form").addEventListener("submit", addComment);
    $("form-select").addEventListener("change", renderQuestions);
    $("evaluation-form").addEventListener("submit", saveEvaluation);
    $("form-save").addEventListener("click", saveForm);
    $("audit-form").addEventListener("submit", loadAudit);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
