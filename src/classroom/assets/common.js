// Shared by both pages: the live state, fetched once and kept in step by
// server-sent events, and small helpers. Everything the server sends is
// inserted as text, never as markup, except the swim-lane (an SVG the
// server draws and escapes).
"use strict";

const racelab = {
  el: (id) => document.getElementById(id),
  text: (id, t) => { const e = document.getElementById(id); if (e) e.textContent = t == null ? "" : String(t); },
  show: (id, on) => { const e = document.getElementById(id); if (e) e.classList.toggle("hidden", !on); },
  ms: (us) => us == null ? "" : (us / 1000).toFixed(us < 10000 ? 1 : 0) + " ms",
  outcomeWords: {
    succeeded: "bought it",
    sold_out: "sold out",
    rejected: "refused",
    gave_up: "gave up",
    error: "error",
    unknown: "unknown",
  },
  // Open the event stream, then read the whole state: a page opened in
  // the middle of a round catches up from /api/state, and misses nothing
  // that happens after.
  live: (handlers) => {
    const es = new EventSource("/events");
    for (const [name, fn] of Object.entries(handlers)) {
      if (name === "snapshot") continue;
      es.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
    }
    const load = () => fetch("/api/state", { cache: "no-store" })
      .then((r) => r.json())
      .then((s) => handlers.snapshot(s))
      .catch(() => {});
    es.addEventListener("open", load);
    load();
    return es;
  },
  post: async (path, body, token) => {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body || {}) });
    let data = {};
    try { data = await r.json(); } catch (e) { data = { error: "HTTP " + r.status }; }
    return { status: r.status, ok: r.ok, data };
  },
};
