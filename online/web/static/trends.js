/* Trends: background and mu_nu sensitivity against time and exposure, live rates, slow control. */
"use strict";
(() => {
  const { el, api, num, rate, sci, plot, COLORS } = NUDAQ;
  let plots = [];
  const SLOW_NAMES = {
    power_MW: "Reactor thermal power", hv_V: "HPGe high voltage", ln2_pct: "LN2 level",
    temp_C: "Temperature",
  };

  const secs = (times) => times.map((t) => Date.parse(t) / 1000);
  const orNull = (xs) => xs.map((v) => (v === null || v === undefined ? null : v));

  function empty(container, text) {
    container.replaceChildren(el("p", { class: "dim" }, text));
  }

  function timePlot(container, series, data, { log = false, label = "", height = 240 } = {}) {
    container.replaceChildren();
    if (!data[0].length) return empty(container, "no data yet");
    plots.push(plot(container, {
      height,
      scales: { y: log ? { distr: 3 } : {} },
      axes: [{}, { label, size: 70 }],
      series: [{}, ...series.map((s, i) => Object.assign({ stroke: COLORS[i], width: 2 }, s))],
    }, data));
  }

  async function load() {
    const hours = document.getElementById("hours").value;
    const h = await api(`/api/history?hours=${hours}`);
    plots.forEach((p) => p.destroy());
    plots = [];
    const a = h.analysis;
    const t = secs(a.map((p) => p.time_utc));
    timePlot(document.getElementById("background-plot"),
      [{ label: "background", value: (u, v) => (v === null ? "–" : `${num(v, 3)} cpd`) },
       { label: "+1σ", stroke: "#5b6877", width: 1, dash: [4, 4] },
       { label: "−1σ", stroke: "#5b6877", width: 1, dash: [4, 4] }],
      [t, orNull(a.map((p) => p.background_cpd)),
       a.map((p) => (p.background_cpd === null ? null : p.background_cpd + (p.background_cpd_error || 0))),
       a.map((p) => (p.background_cpd === null ? null : p.background_cpd - (p.background_cpd_error || 0)))],
      { label: "cpd" });
    const limitSeries = [
      { label: "expected 90% CL", value: (u, v) => (v === null ? "–" : `${sci(v)} μB`) },
      { label: "measured 90% CL", value: (u, v) => (v === null ? "–" : `${sci(v)} μB`) },
    ];
    const limits = [orNull(a.map((p) => p.expected_limit_90_muB)), orNull(a.map((p) => p.limit_90_muB))];
    timePlot(document.getElementById("limit-time-plot"), limitSeries, [t, ...limits], { log: true, label: "μB" });
    const byExposure = a.map((p, i) => [p.exposure_on_kg_day, limits[0][i], limits[1][i]])
      .sort((p, q) => p[0] - q[0]);
    const container = document.getElementById("limit-exposure-plot");
    container.replaceChildren();
    if (!byExposure.length) empty(container, "no data yet");
    else {
      plots.push(plot(container, {
        height: 240,
        scales: { x: { time: false }, y: { distr: 3 } },
        axes: [{ label: "ON exposure (kg day)" }, { label: "μB", size: 70 }],
        series: [{ value: (u, v) => (v === null ? "–" : `${num(v, 3)} kg day`) },
          ...limitSeries.map((s, i) => Object.assign({
            stroke: COLORS[i], width: 2, paths: () => null, points: { show: true, size: 6, fill: COLORS[i] },
          }, s))],
      }, [byExposure.map((p) => p[0]), byExposure.map((p) => p[1]), byExposure.map((p) => p[2])]));
    }
    const r = h.rates;
    timePlot(document.getElementById("rates-plot"),
      r.map((s) => ({ label: s.name, value: (u, v) => (v === null ? "–" : `${rate(v)} Hz`) })),
      [r.length ? secs(r[0].time_utc) : [], ...r.map((s) => s.values.map((v) => (v > 0 ? v : null)))],
      { log: true, label: "Hz" });
    const slow = document.getElementById("slow-plots");
    slow.replaceChildren();
    if (!h.slow_control.length) empty(slow, "no slow-control readings in this span");
    for (const s of h.slow_control) {
      const box = el("div", { class: "panel" }, el("h2", {}, `${SLOW_NAMES[s.name] || s.name} (${s.unit})`));
      const area = el("div", { class: "plot", id: `slow-${s.name}` });
      box.append(area);
      slow.append(box);
      timePlot(area, [{ label: s.name, value: (u, v) => (v === null ? "–" : `${num(v, 2)} ${s.unit}`) }],
        [secs(s.time_utc), s.values], { label: s.unit, height: 200 });
    }
  }

  async function reload() {
    try { await load(); } catch (err) {
      document.getElementById("background-plot").replaceChildren(
        el("span", { class: "error-text" }, err.message));
    }
  }
  document.getElementById("hours").addEventListener("change", reload);
  document.getElementById("reload").addEventListener("click", reload);
  reload();
  setInterval(reload, 60000);
})();
