// The student page: a name, then one big Buy button per round. The button
// unlocks when the countdown ends; a press the server receives before
// that is held and released with everyone else's.
"use strict";
(() => {
  const $ = racelab;
  let round = null;      // the round as last seen
  let mine = null;       // this student's purchase in `round`, if any
  let buying = false;
  let countdownEnd = null;
  let myName = null;     // once joined, a late snapshot does not undo it

  function othersSentence(r) {
    const others = Math.max(0, (r.succeeded || 0) - 1);
    return others > 0 ? "You bought it — and so did " + others + " other" + (others === 1 ? "" : "s") + "!" : "You bought it!";
  }

  function renderOutcome() {
    const out = $.el("outcome");
    if (!mine || !mine.outcome) {
      out.className = "outcome";
      $.text("outcome", buying ? "Buying…" : "");
      return;
    }
    if (mine.outcome === "succeeded") {
      out.className = "outcome won";
      $.text("outcome", othersSentence(round || {}));
    } else if (mine.outcome === "sold_out") {
      out.className = "outcome lost";
      $.text("outcome", "Sold out — someone was faster.");
    } else if (mine.outcome === "rejected") {
      out.className = "outcome lost";
      $.text("outcome", "Refused: the database said no (sold out).");
    } else if (mine.outcome === "gave_up") {
      out.className = "outcome lost";
      $.text("outcome", "Gave up after " + mine.tries + " tries.");
    } else {
      out.className = "outcome bad";
      $.text("outcome", "Error: " + (mine.message || mine.outcome));
    }
  }

  function renderButton() {
    const btn = $.el("buy");
    const counting = round && round.state === "countdown";
    const left = countdownEnd == null ? 0 : countdownEnd - performance.now();
    const open = round && ((round.state === "open" && !round.closing) || (counting && left <= 0));
    btn.disabled = !open || buying || !!mine;
    if (!round) {
      $.text("status", "Waiting for the teacher to start a round…");
    } else if (counting && left > 0) {
      $.text("status", "Round " + round.number + " starts in " + Math.ceil(left / 1000) + "…");
    } else if (open && !mine && !buying) {
      $.text("status", "Go! Buy the last item!");
    } else if (round.state === "closed") {
      $.text("status", "Round " + round.number + " is over.");
    } else {
      $.text("status", "Round " + round.number);
    }
    const info = round && round.state === "closed" && round.verdict
      ? "The shop sold " + round.units_sold + " of " + round.stock + ": " + round.verdict.toUpperCase()
      : "";
    $.text("round-info", info);
  }

  function setRound(r, me) {
    const changed = !round || !r || r.number !== round.number;
    round = r;
    if (changed) { mine = null; buying = false; }
    if (me !== undefined) mine = me && me.purchase && me.purchase.outcome ? me.purchase : mine;
    countdownEnd = r && r.state === "countdown" ? performance.now() + r.remaining_ms : null;
    renderButton();
    renderOutcome();
  }

  function showShop(name) {
    name = name || myName;
    myName = name;
    $.show("name-form", !name);
    $.show("shop", !!name);
    $.text("me", name || "");
  }

  $.live({
    snapshot: (s) => {
      showShop(s.me && s.me.name);
      setRound(s.round, s.me || null);
    },
    state: (s) => setRound(s.round),
    attempt: (a) => {
      if (!round || a.round !== round.number) return;
      round.succeeded = a.succeeded;
      renderOutcome();
    },
  });
  setInterval(renderButton, 200);

  $.el("name-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $.text("error", "");
    const r = await $.post("/api/join", { name: $.el("name").value });
    if (!r.ok) { $.text("error", r.data.error); return; }
    showShop(r.data.name);
  });

  $.el("buy").addEventListener("click", async () => {
    if (buying || mine || !round) return;
    buying = true;
    const number = round.number;
    renderButton();
    renderOutcome();
    const r = await $.post("/api/buy", {});
    buying = false;
    if (!round || round.number !== number) return;
    if (r.ok) {
      mine = r.data;
      if (r.data.succeeded != null) round.succeeded = Math.max(round.succeeded || 0, r.data.succeeded);
    } else {
      $.text("error", r.data.error);
    }
    renderButton();
    renderOutcome();
  });
})();
