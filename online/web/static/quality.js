/* Run quality: the shifter marks runs good or bad with a reason; which runs the result uses. */
"use strict";
(() => {
  const { el, api, num, sci, pill, time } = NUDAQ;
  const message = document.getElementById("quality-message");

  async function mark(number, quality, reason) {
    message.hidden = false;
    try {
      await api(`/api/runs/${number}/quality`, { method: "POST", body: { quality, reason } });
      message.className = "message ok";
      message.textContent = `run ${number} marked ${quality}`;
    } catch (err) {
      message.className = "message error";
      message.textContent = `refused: ${err.message}`;
    }
    reload();
  }

  function row(r) {
    const choice = el("select", { "aria-label": `quality of run ${r.number}` },
      ...["good", "bad", "unchecked"].map((q) => el("option", { value: q, selected: q === r.quality }, q)));
    const reason = el("input", { placeholder: "reason", size: 18, value: r.quality_reason });
    return el("tr", { id: `run-${r.number}` },
      el("td", { class: "num" }, r.number),
      el("td", {}, pill(r.state === "running" ? "running" : r.state, r.state === "ended" ? "idle" : r.state)),
      el("td", {}, time(r.started_utc)),
      el("td", {}, time(r.stopped_utc)),
      el("td", { class: "num" }, num(r.live_time_on_s, 0)),
      el("td", { class: "num" }, num(r.live_time_off_s, 0)),
      el("td", { class: "num" }, r.events_candidate),
      el("td", {}, pill(r.quality)),
      el("td", {}, r.quality_reason || "–"),
      el("td", {}, r.in_analysis ? "yes" : "–"),
      el("td", { class: "nowrap" }, choice, " ", reason, " ",
        el("button", { shifter: true, onclick: () => mark(r.number, choice.value, reason.value) },
          "Save")));
  }

  async function load() {
    const [runs, analysis] = await Promise.all([api("/api/runs"), api("/api/analysis")]);
    document.getElementById("run-rows").replaceChildren(...runs.map(row));
    document.getElementById("analysis-runs").textContent = analysis.runs.join(", ") || "none";
    const a = analysis.latest;
    const rows = a ? [
      ["computed", time(a.time_utc)],
      ["background", `${num(a.background_cpd, 3)} ± ${num(a.background_cpd_error, 3)} cpd`],
      ["best fit μν²", a.mu_nu2_1e20 === null ? "–" :
        `${a.mu_nu2_1e20.toPrecision(3)} ± ${a.mu_nu2_1e20_error.toPrecision(3)} × 10⁻²⁰ μB²`],
      ["μν limit (90% CL)", a.limit_90_muB === null ? "–" : `< ${sci(a.limit_90_muB)} μB`],
      ["expected limit", a.expected_limit_90_muB === null ? "–" : `${sci(a.expected_limit_90_muB)} μB`],
      ["exposure ON / OFF", `${sci(a.exposure_on_kg_day)} / ${sci(a.exposure_off_kg_day)} kg day`],
    ] : [["result", "no live analysis yet"]];
    document.getElementById("analysis-summary").replaceChildren(
      ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  NUDAQ.onSession((s) => { document.getElementById("readonly-note").hidden = s.logged_in; });
  const reload = NUDAQ.every(0, load);
})();
