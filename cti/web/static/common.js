// What every page the hub serves shares (the agent desktop, the wallboard, the QA
// console): building DOM nodes, showing and hiding them, formatting, and calling the
// hub's API with the session's CSRF token. Loaded before each page's own script (both
// with `defer`, which keeps their order); it defines `window.CtiHub` and nothing else.
"use strict";

window.CtiHub = (() => {
  const $ = (id) => document.getElementById(id);

  // el("p", {class: "x", text: "...", onclick: f}, child, [more children]...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(id, visible) { $(id).hidden = !visible; }
  function say(text) { $("announcer").textContent = text; } // the page's aria-live region
  function words(slug) { return String(slug || "").replaceAll("_", " "); }
  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const two = (n) => String(n).padStart(2, "0");
    const hours = Math.floor(s / 3600);
    const rest = `${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
    return hours ? `${hours}:${rest}` : rest;
  }

  // An API caller for a page whose session (the /api/me answer, or null) `me()` returns:
  // every state-changing request carries the session's CSRF token (docs/api.md).
  function apiFor(me) {
    return async function api(path, options = {}) {
      const headers = { Accept: "application/json", ...(options.headers || {}) };
      const method = options.method || "GET";
      const session = me();
      if (method !== "GET" && session && session.csrf_token) headers["X-CSRF-Token"] = session.csrf_token;
      if (options.json !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(path, {
        method,
        headers,
        credentials: "same-origin",
        body: options.json !== undefined ? JSON.stringify(options.json) : undefined,
      });
      let body = null;
      try { body = await response.json(); } catch (_) { body = null; }
      return { status: response.status, ok: response.ok, body: body || {} };
    };
  }

  return Object.freeze({ $, el, show, say, words, when, clock, apiFor });
})();
