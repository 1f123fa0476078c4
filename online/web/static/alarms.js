/* Alarms: every alarm with its state; a logged-in shifter acknowledges; the thresholds. */
"use strict";
(() => {
  const { el, api, pill, time } = NUDAQ;
  const message = document.getElementById("ack-message");

  function show(text, ok) {
    message.hidden = false;
    message.className = `message ${ok ? "ok" : "error"}`;
    message.textContent = text;
  }

  async function ack(alarm) {
    try {
      await api(`/api/alarms/${alarm.id}/ack`, { method: "POST" });
      show(`acknowledged: ${alarm.message}`, true);
    } catch (err) {
      show(`refused: ${err.message}`, false);
    }
    reload();
  }

  function row(a) {
    const state = a.cleared_utc ? "cleared" : a.acked_utc ? "acknowledged" : "open";
    return el("tr", { id: `alarm-${a.id}` },
      el("td", {}, pill(state, a.cleared_utc ? "cleared" : a.acked_utc ? "warning" : "critical")),
      el("td", {}, pill(a.severity)),
      el("td", { class: "mono" }, a.name),
      el("td", {}, a.message),
      el("td", {}, time(a.raised_utc)),
      el("td", {}, a.acked_utc ? `${time(a.acked_utc)} by ${a.acked_by}` : "–"),
      el("td", {}, time(a.cleared_utc)),
      el("td", {}, a.acked_utc || a.cleared_utc ? null :
        el("button", { class: "ack", "data-alarm": a.id, shifter: true, onclick: () => ack(a) },
          "Acknowledge")));
  }

  async function load() {
    const data = await api("/api/alarms");
    document.getElementById("alarm-rows").replaceChildren(...(data.alarms.length ? data.alarms.map(row) :
      [el("tr", {}, el("td", { colspan: 8, class: "noalarm" }, "no alarms recorded"))]));
    document.getElementById("condition-rows").replaceChildren(...data.conditions.map((c) =>
      el("tr", {}, el("td", { class: "mono" }, c.name), el("td", {}, c.meaning), el("td", {}, c.threshold))));
  }

  NUDAQ.onSession((s) => { document.getElementById("readonly-note").hidden = s.logged_in; });
  const reload = NUDAQ.every(5000, load);
})();
