// The projector: the round live (stock, units sold, every purchase as it
// ends), its verdict and swim-lane once closed; with the teacher's token
// in the address, the controls too.
"use strict";
(() => {
  const $ = racelab;
  const token = new URLSearchParams(location.search).get("token");
  let state = null;
  let countdownEnd = null;
  const rows = new Map();

  $.show("controls", !!token);

  function verdictClass(v) { return v ? v.toLowerCase() : ""; }

  function renderRound(r) {
    if (!r) {
      $.text("round-number", "–");
      $.text("state", "waiting");
      $.el("state").className = "badge";
      return;
    }
    $.text("round-number", r.number);
    $.text("state", r.closing ? "closing" : r.state);
    $.el("state").className = "badge " + r.state;
    $.text("stock", r.stock);
    $.text("units-sold", r.units_sold);
    $.text("stock-left", r.stock_left == null ? "–" : r.stock_left);
    $.text("oversold", r.oversold);
    $.el("oversold").classList.toggle("bad", r.oversold > 0);
    $.text("buyers", r.buyers);
    $.text("strategy-name", r.strategy);
    $.text("strategy-description", r.description);
    $.text("script", r.script);
    countdownEnd = r.state === "countdown" ? performance.now() + r.remaining_ms : null;
    tick();
    const box = $.el("verdict-box");
    if (r.state === "closed") {
      box.className = "verdict-box " + verdictClass(r.verdict);
      $.text("verdict", r.verdict ? r.verdict.toUpperCase() : "NOT AUDITED");
      $.text("verdict-sentence", r.verdict_sentence);
      $.text("explanation", r.explanation);
      $.show("lane-box", !!r.swimlane_svg);
      $.el("swimlane").innerHTML = r.swimlane_svg || "";
      $.text("swimlane-caption", r.swimlane_caption);
      $.text("timeline", r.timeline);
    } else {
      box.className = "verdict-box hidden";
      $.show("lane-box", false);
    }
    rows.clear();
    $.el("attempts").replaceChildren();
    for (const a of r.attempts_log || []) addAttempt(a);
  }

  function addAttempt(a) {
    if (!state || !state.round || a.round !== state.round.number || rows.has(a.buyer)) return;
    const tr = document.createElement("tr");
    tr.className = a.outcome || "";
    for (const t of ["" + a.buyer, a.who + (a.bot ? " (bot)" : ""), $.outcomeWords[a.outcome] || a.outcome,
      $.ms(a.latency_us), a.at_ms == null ? "" : a.at_ms + " ms"]) {
      const td = document.createElement("td");
      td.textContent = t;
      tr.appendChild(td);
    }
    rows.set(a.buyer, tr);
    const body = $.el("attempts");
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > 300) body.removeChild(body.lastChild);
  }

  function renderStrategies(all) {
    // Rounds race SQL strategies; those with \redis commands are not offered.
    const list = all.filter((s) => !s.redis);
    const sel = $.el("strategy-select");
    if (sel.options.length === list.length) return;
    const chosen = sel.value || "naive";
    sel.replaceChildren();
    for (const s of list) {
      const o = document.createElement("option");
      o.value = s.name;
      o.textContent = s.name + (s.source === "builtin" ? "" : " (" + s.source + ")");
      sel.appendChild(o);
    }
    sel.value = chosen;
  }

  function showChosenStrategy() {
    if (!state || (state.round && state.round.state !== "closed")) return;
    const s = (state.strategies || []).find((x) => x.name === $.el("strategy-select").value);
    if (!s) return;
    $.text("strategy-name", s.name);
    $.text("strategy-description", s.description);
    $.text("script", s.script);
  }

  function renderReplay(p) {
    $.show("replay-box", !!p);
    if (!p) return;
    $.text("replay-title", p.title);
    $.text("replay-summary", p.summary);
    $.text("replay-log", p.log);
    $.el("replay-lane").innerHTML = p.swimlane_svg || "";
    $.el("replay-step").disabled = !p.stepping;
    $.el("replay-stop").disabled = !p.stepping;
  }

  function render(s) {
    state = s;
    $.text("join-url", s.join_url);
    $.text("students", s.students);
    $.text("bots", s.bots);
    $.show("loopback-note", s.loopback);
    renderStrategies(s.strategies || []);
    renderRound(s.round);
    renderReplay(s.replay);
    if (!s.round) showChosenStrategy();
  }

  function tick() {
    if (countdownEnd == null) { $.text("countdown", ""); return; }
    const left = Math.max(0, countdownEnd - performance.now());
    $.text("countdown", left > 0 ? Math.ceil(left / 1000) + " s" : "go!");
  }
  setInterval(tick, 200);

  $.live({
    snapshot: render,
    state: render,
    attempt: (a) => {
      if (!state || !state.round || a.round !== state.round.number) return;
      addAttempt(a);
    },
    stock: (v) => {
      if (!state || !state.round || v.round !== state.round.number || state.round.state === "closed") return;
      state.round.units_sold = v.units_sold;
      state.round.stock_left = v.stock_left;
      state.round.oversold = v.oversold;
      $.text("units-sold", v.units_sold);
      $.text("stock-left", v.stock_left == null ? "–" : v.stock_left);
      $.text("oversold", v.oversold);
      $.el("oversold").classList.toggle("bad", v.oversold > 0);
    },
    admitted: (v) => {
      if (!state || !state.round || v.round !== state.round.number) return;
      state.round.buyers = Math.max(state.round.buyers, v.buyer);
      $.text("buyers", state.round.buyers);
    },
    room: (v) => { $.text("students", v.students); $.text("bots", v.bots); },
    replay: renderReplay,
  });

  async function act(path, body) {
    $.text("action-error", "");
    const r = await $.post(path, body, token);
    if (!r.ok) $.text("action-error", r.data.error || ("HTTP " + r.status));
    return r;
  }
  const num = (id) => Number($.el(id).value);
  $.el("strategy-select").addEventListener("change", showChosenStrategy);
  $.el("start").addEventListener("click", () => act("/api/round", {
    strategy: $.el("strategy-select").value,
    stock: num("stock-input"),
    countdown_s: num("countdown-input"),
    think_ms: num("think-input"),
  }));
  $.el("close").addEventListener("click", () => act("/api/round/close"));
  $.el("add-bots").addEventListener("click", () => act("/api/bots", { n: num("bots-n") }));
  $.el("remove-bots").addEventListener("click", async () => {
    const r = await fetch("/api/bots", { method: "DELETE", headers: { Authorization: "Bearer " + token } });
    if (!r.ok) $.text("action-error", (await r.json()).error);
  });
  $.el("replay-find").addEventListener("click", () => act("/api/replay", { strategy: $.el("strategy-select").value }));
  $.el("replay-step").addEventListener("click", () => act("/api/replay/step"));
  $.el("replay-stop").addEventListener("click", () => act("/api/replay/stop"));
})();
