/* Overview: run, reactor, rates, dead time, losses and alarms, updated by every pushed status;
   every value shows its age ("· 3 s ago", the UTC time in its tooltip). */
"use strict";
(() => {
  const { el, num, rate, age, ago, utc, clockTime, pill, duration, plot, COLORS } = NUDAQ;
  const WINDOW_S = 600;
  const history = { t: [], hpge: [], acv: [], crv: [] };
  let ratePlot = null;

  function alarmRow(a) {
    return el("div", { class: `alarm ${a.severity}${a.acked_utc ? " acked" : ""}` },
      pill(a.severity), el("span", { class: "msg" }, a.message),
      a.acked_utc ? el("span", { class: "dim" }, `ack ${a.acked_by}`) : null);
  }

  /* "· 3 s ago" after a value, its UTC time in the tooltip; red once older than stale_after_s */
  function setAge(id, iso, st, prefix = "") {
    const node = document.getElementById(id);
    node.textContent = iso ? `· ${prefix}${ago(iso)}` : "";
    node.title = utc(iso);
    node.classList.toggle("stale", !!iso && age(iso) > st.stale_after_s);
  }

  function update(st) {
    const snapshotStale = age(st.snapshot_utc) === null || age(st.snapshot_utc) > st.stale_after_s;
    for (const id of ["reactor-panel", "streams-panel"]) {
      document.getElementById(id).classList.toggle("stale", snapshotStale);
    }
    document.getElementById("run-number").textContent = st.run ? `run ${st.run}` : "no run";
    document.getElementById("run-state").replaceChildren(pill(st.reachable ? st.state : "unreachable"));
    setAge("run-age", st.run_control_utc, st);
    document.getElementById("elapsed").textContent = st.state === "running" ? duration(st.elapsed_s) : "–";
    document.getElementById("dead-time").textContent =
      st.dead_fraction === null ? "–" : `${num(100 * st.dead_fraction, 2)} %`;
    setAge("dead-time-age", st.dead_fraction === null ? null : st.snapshot_utc, st);
    document.getElementById("rc-error").textContent = st.error || (st.reachable ? "ok" :
      st.run_control_utc ? `does not answer since ${clockTime(st.run_control_utc)}` : "does not answer");
    const reactor = document.getElementById("reactor-state");
    reactor.textContent = st.reactor === "unknown" ? "–" : st.reactor.toUpperCase();
    reactor.className = `big reactor-${st.reactor}`;
    setAge("reactor-age", st.reactor === "unknown" ? null : st.snapshot_utc, st);
    document.getElementById("reactor-power").textContent =
      st.power_MW === null ? "–" : `${num(st.power_MW, 0)} MW`;
    setAge("reactor-power-age", st.power_MW === null ? null : st.power_utc, st);
    document.getElementById("snapshot-age").textContent = st.snapshot_utc ?
      `${clockTime(st.snapshot_utc)} · ${ago(st.snapshot_utc)}` : "none received";
    setAge("streams-age", st.snapshot_utc, st);
    const known = (text) => (st.snapshot_utc ? text : "–");  /* nothing from the builder yet */
    document.getElementById("stream-rows").replaceChildren(...st.streams.map((s) =>
      el("tr", {},
        el("td", {}, s.name),
        el("td", { class: "num", id: `rate-${s.name}` }, known(rate(s.rate_hz))),
        el("td", { class: "num", id: `pulses-${s.name}` }, known(s.pulses.toLocaleString("en-US"))),
        el("td", { class: `num${s.lost ? " error-text" : ""}`, id: `lost-${s.name}` }, known(s.lost)),
        el("td", { class: "num", id: `uncovered-${s.name}` }, known(num(s.uncovered_s, 3))))));
    const events = Object.entries(st.events).map(([k, v]) => `${k} ${v}`).join(" · ");
    document.getElementById("events").textContent = events || "–";
    const unknown = document.getElementById("alarms-unknown");
    unknown.hidden = st.alarms_known;
    unknown.textContent = st.alarms_known ? "" : `alarm state unknown: ${st.alarms_note}`;
    setAge("alarms-age", st.database_utc, st, "read ");
    document.getElementById("alarm-list").replaceChildren(...(st.alarms.length ? st.alarms.map(alarmRow) :
      [st.alarms_known ? el("span", { class: "noalarm" }, "no alarms") : el("span", { class: "dim" }, "–")]));
    document.getElementById("processes").textContent = st.processes.join("  ") || "–";
    if (st.state === "running" && !st.stale) addRates(st);
  }

  function addRates(st) {
    const t = Date.parse(st.time_utc) / 1000;
    if (history.t.length && t <= history.t[history.t.length - 1]) return;
    history.t.push(t);
    for (const s of st.streams) history[s.name]?.push(s.rate_hz > 0 ? s.rate_hz : null);
    while (history.t.length && history.t[0] < t - WINDOW_S) {
      for (const key of Object.keys(history)) history[key].shift();
    }
    const data = [history.t, history.hpge, history.acv, history.crv];
    if (!ratePlot) {
      ratePlot = plot(document.getElementById("rate-plot"), {
        height: 220,
        scales: { y: { distr: 3 } },
        axes: [{}, { label: "Hz" }],
        series: [{}, ...["hpge", "acv", "crv"].map((name, i) =>
          ({ label: name, stroke: COLORS[i], width: 2, value: (u, v) => rate(v) }))],
      }, data);
    } else {
      ratePlot.setData(data);
    }
  }

  /* start the rate plot with what the server kept, then extend it with every pushed status */
  async function seed() {
    try {
      const { rates } = await NUDAQ.api("/api/history?hours=0.01");
      const cut = Date.now() / 1000 - WINDOW_S;
      rates[0]?.time_utc.forEach((iso, i) => {
        const t = Date.parse(iso) / 1000;
        if (t < cut) return;
        history.t.push(t);
        for (const s of rates) history[s.name]?.push(s.values[i] > 0 ? s.values[i] : null);
      });
    } catch (err) { /* the plot starts empty */ }
    NUDAQ.onStatus(update);
  }
  seed();
})();
