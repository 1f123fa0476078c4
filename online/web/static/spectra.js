/* Spectra: reactor ON and OFF per category, and the ON-OFF residual with the MM curves.
   X-ray lines are drawn as labelled dashed lines; drag zooms, double-click resets. */
"use strict";
(() => {
  const { el, api, num, sci, span, plot, COLORS } = NUDAQ;
  const body = document.body.dataset;
  const XRAY = body.xrayLines ? body.xrayLines.split(",").map(Number) : [];
  let plots = [];

  /* uPlot hook: dashed vertical line with its energy at every X-ray line */
  function xrayHook(u) {
    const { ctx } = u;
    const [xmin, xmax] = [u.scales.x.min, u.scales.x.max];
    ctx.save();
    ctx.setLineDash([5, 4]);
    ctx.strokeStyle = "#d2a8ff";
    ctx.fillStyle = "#d2a8ff";
    ctx.lineWidth = 1;
    ctx.font = `${12 * devicePixelRatio}px sans-serif`;
    ctx.textAlign = "left";
    const row = 15 * devicePixelRatio;
    XRAY.filter((e) => e >= xmin && e <= xmax).sort((a, b) => b - a).forEach((e, i) => {
      const x = u.valToPos(e, "x", true);
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.fillText(`${e} keV`, x + 3 * devicePixelRatio, u.bbox.top + row * (i + 1));
    });
    ctx.restore();
  }

  /* uPlot hook: error bars of series 1 from the array errs */
  function errorHook(errs) {
    return (u) => {
      const { ctx } = u;
      const xs = u.data[0], ys = u.data[1];
      ctx.save();
      ctx.setLineDash([]);
      ctx.strokeStyle = "rgba(255,255,255,0.55)";
      ctx.lineWidth = 1;
      for (let i = 0; i < xs.length; i++) {
        if (ys[i] === null || xs[i] < u.scales.x.min || xs[i] > u.scales.x.max) continue;
        const x = u.valToPos(xs[i], "x", true);
        ctx.beginPath();
        ctx.moveTo(x, u.valToPos(ys[i] - errs[i], "y", true));
        ctx.lineTo(x, u.valToPos(ys[i] + errs[i], "y", true));
        ctx.stroke();
      }
      ctx.restore();
    };
  }

  const centres = (edges) => edges.slice(0, -1).map((e, i) => 0.5 * (e + edges[i + 1]));
  const positive = (ys) => ys.map((y) => (y > 0 ? y : null));
  const stepped = uPlot.paths.stepped({ align: 0 });

  function query(extra) {
    const params = new URLSearchParams(extra);
    params.set("category", document.getElementById("category").value);
    if (document.getElementById("exclude-bad").checked) params.set("exclude_bad", "true");
    const runs = document.getElementById("runs").value.trim();
    if (runs) params.set("runs", runs);
    return params.toString();
  }

  function describe(s) {
    return `runs ${s.runs.length ? s.runs.join(", ") : "none"}, live ${span(s.live_time_s)}` +
      ` = ${sci(s.exposure_kg_day, 2)} kg day, ${s.counts.reduce((a, b) => a + b, 0)} counts`;
  }

  /* the settings a plot shows, kept on the page as data-shown once it is drawn */
  const settings = () => ["category", "range", "rebin", "yscale"]
    .map((id) => document.getElementById(id).value).join(",");
  let generation = 0;

  async function load() {
    const mine = ++generation;
    const shown = settings();
    const maxKeV = document.getElementById("range").value;
    const rebin = document.getElementById("rebin").value;
    const log = document.getElementById("yscale").value === "log";
    const [on, off, res] = await Promise.all([
      api(`/api/spectra?${query({ reactor: "on", rebin, max_keV: maxKeV })}`),
      api(`/api/spectra?${query({ reactor: "off", rebin, max_keV: maxKeV })}`),
      api(`/api/residual?${query({ rebin: 5, max_keV: Math.min(Number(maxKeV), 120) })}`),
    ]);
    if (mine !== generation) return; /* a newer request supersedes this one */
    plots.forEach((p) => p.destroy());
    const x = on.bin_edges_keV.slice(0, -1);
    const onY = log ? positive(on.rate_cpd) : on.rate_cpd;
    const offY = log ? positive(off.rate_cpd) : off.rate_cpd;
    const onoff = plot(document.getElementById("onoff-plot"), {
      height: 340,
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      axes: [{ label: "energy (keV)" }, { label: "cpd", size: 70 }],
      series: [
        { label: "energy", value: (u, v) => (v === null ? "–" : `${num(v, 2)} keV`) },
        { label: "reactor ON", stroke: "#ff9f43", width: 1.5, paths: stepped, value: (u, v) => (v === null ? "–" : num(v, 3)) },
        { label: "reactor OFF", stroke: "#5eb1ff", width: 1.5, paths: stepped, value: (u, v) => (v === null ? "–" : num(v, 3)) },
      ],
      hooks: { draw: [xrayHook] },
    }, [x, onY, offY]);
    document.getElementById("onoff-info").textContent = `ON: ${describe(on)}. OFF: ${describe(off)}.`;

    const rx = centres(res.bin_edges_keV);
    const curveSeries = res.curves.map((c, i) =>
      ({ label: c.label, stroke: COLORS[i + 2], width: 2, dash: i ? [6, 4] : [], points: { show: false } }));
    const residual = plot(document.getElementById("residual-plot"), {
      height: 320,
      scales: { x: { time: false } },
      axes: [{ label: "energy (keV)" }, { label: "cpd", size: 70 }],
      series: [
        { label: "energy", value: (u, v) => (v === null ? "–" : `${num(v, 1)} keV`) },
        { label: "ON − OFF", stroke: "#e8ecf1", width: 0, points: { show: true, size: 5, fill: "#e8ecf1" },
          value: (u, v) => (v === null ? "–" : num(v, 3)) },
        ...curveSeries,
      ],
      hooks: { draw: [xrayHook, errorHook(res.rate_cpd_error)] },
    }, [rx, res.rate_cpd, ...res.curves.map((c) => c.rate_cpd)]);
    document.getElementById("residual-info").textContent =
      `ON runs ${res.runs_on.join(", ") || "none"}; OFF runs ${res.runs_off.join(", ") || "none"}; ` +
      `1 keV bins` + (res.curves.length ? "; MM curves from the latest live analysis." :
        "; no live analysis yet, so no MM curves.");
    plots = [onoff, residual];
    document.getElementById("onoff-plot").dataset.shown = shown;
  }

  async function reload() {
    try { await load(); } catch (err) {
      document.getElementById("onoff-info").replaceChildren(el("span", { class: "error-text" }, err.message));
    }
  }
  for (const id of ["category", "range", "rebin", "yscale", "exclude-bad"]) {
    document.getElementById(id).addEventListener("change", reload);
  }
  document.getElementById("reload").addEventListener("click", reload);
  reload();
})();
