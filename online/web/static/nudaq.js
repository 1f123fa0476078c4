/* nudaq web: what every page shares. DOM is built with textContent only (never innerHTML
   with data), API writes carry the CSRF token, the live status arrives as server-sent events.
   Staleness is shown, never hidden: every page says in red when the builder has sent nothing
   for longer than the server's stale_after_s (or the live updates stopped) and when the
   database is unavailable; the alarm badge says "unknown" while the monitor is not known to
   run; controls that need a shifter (elements with data-shifter) are disabled while logged out. */
"use strict";

const NUDAQ = (() => {
  const statusListeners = [];
  const sessionListeners = [];
  let session = { logged_in: false, name: null, csrf_token: null };
  let lastStatus = null;
  let receivedAt = 0;           /* Date.now() when lastStatus arrived */
  let databaseRefused = null;   /* detail of an API 503 "database unavailable" */
  const UNAVAILABLE = "database unavailable";

  /* el("td", {class: "num"}, "text", child, ...): an element with text children only. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "class") node.className = value;
      else if (key === "shifter") guard(node);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function cookie(name) {
    const match = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return match ? decodeURIComponent(match.slice(name.length + 1)) : null;
  }

  /* fetch JSON; POSTs send the CSRF token; failures throw Error(detail) with .status */
  async function api(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      const csrf = session.csrf_token || cookie("nudaq_csrf");
      if (csrf) headers["X-CSRF-Token"] = csrf;
    }
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.status === 503 && data?.error === UNAVAILABLE) {
      databaseRefused = data.detail || UNAVAILABLE;
      renderBanners();
    }
    if (response.status === 401 && method !== "GET" && session.logged_in) loggedOut();
    if (!response.ok) {
      let detail = data && (data.detail ?? data.error);
      if (data?.error === UNAVAILABLE) detail = `${UNAVAILABLE}: ${data.detail}`;
      if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
      const err = new Error(`${response.status}: ${detail || response.statusText}`);
      err.status = response.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  /* -- formatting ------------------------------------------------------------------------ */
  function duration(s) {
    s = Math.max(0, Math.floor(s || 0));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`;
  }
  /* a live time in the unit that reads best: s, h or days */
  function span(s) {
    if (s < 3600) return `${num(s, 1)} s`;
    if (s < 3 * 86400) return `${num(s / 3600, 2)} h`;
    return `${num(s / 86400, 2)} days`;
  }
  function num(x, digits = 1) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    return Number(x).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function sci(x, digits = 2) {
    if (x === null || x === undefined) return "–";
    return Number(x).toExponential(digits);
  }
  function time(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  /* a rate in Hz to three significant digits, whole Hz from 100 Hz up (0.200, 12.3, 250) */
  function rate(hz) {
    if (hz === null || hz === undefined || Number.isNaN(hz)) return "–";
    const rounded = Number(Number(hz).toPrecision(3));
    if (rounded === 0 || Math.abs(rounded) >= 100) return num(hz, 0);
    return num(rounded, 2 - Math.floor(Math.log10(Math.abs(rounded))));
  }
  /* seconds since an ISO time of the server, by the server's clock (the status's time_utc)
     plus the time since that status arrived: right also when the browser's clock is not */
  function age(iso) {
    if (!iso || !lastStatus) return null;
    const server = Date.parse(lastStatus.time_utc) + (Date.now() - receivedAt);
    return Math.max(0, (server - Date.parse(iso)) / 1000);
  }
  function ago(iso) {
    const s = age(iso);
    if (s === null) return "";
    if (s < 90) return `${Math.floor(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 2 * 86400) return `${num(s / 3600, 1)} h ago`;
    return `${num(s / 86400, 1)} days ago`;
  }
  /* local time of day of an ISO time (HH:MM:SS), with the date when not today */
  function clockTime(iso) {
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return d.toDateString() === new Date().toDateString() ? hms : `${time(iso).slice(0, 10)} ${hms}`;
  }
  /* an ISO time as "YYYY-MM-DD HH:MM:SS UTC" (the tooltips) */
  function utc(iso) {
    return iso ? `${new Date(iso).toISOString().slice(0, 19).replace("T", " ")} UTC` : "";
  }
  function pill(text, kind) { return el("span", { class: `pill ${kind || text}` }, text); }

  /* -- session --------------------------------------------------------------------------- */
  /* a control that needs a shifter: disabled while logged out */
  function guard(node) {
    node.dataset.shifter = "";
    node.disabled = !session.logged_in;
    node.title = session.logged_in ? "" : "log in as shifter first";
    return node;
  }
  function applySession() {
    document.querySelectorAll("[data-shifter]").forEach(guard);
    sessionListeners.forEach((fn) => fn(session));
  }
  function loggedOut() {
    session = { logged_in: false, name: null, csrf_token: null };
    renderSession();
    applySession();
  }
  function renderSession() {
    const box = document.getElementById("session");
    box.replaceChildren();
    if (session.logged_in) {
      box.append(
        el("span", { class: "dim" }, "shifter"),
        el("strong", { id: "shifter-name" }, session.name),
        el("button", { id: "logout", onclick: logout }, "Log out"),
      );
    } else {
      const name = el("input", { id: "login-name", placeholder: "your name", autocomplete: "username" });
      const token = el("input", {
        id: "login-token", type: "password", placeholder: "shifter token", autocomplete: "current-password",
      });
      const error = el("span", { id: "login-error", class: "error-text" });
      const form = el("form", { id: "login-form" }, name, token,
        el("button", { type: "submit", id: "login" }, "Log in"), error);
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          session = await api("/api/login", {
            method: "POST", body: { name: name.value.trim() || "shifter", token: token.value },
          });
          renderSession();
          applySession();
        } catch (err) {
          error.textContent = err.status === 401 ? "wrong token" : err.message;
        }
      });
      box.append(form);
    }
  }
  async function logout() {
    await api("/api/logout", { method: "POST" });
    loggedOut();
  }

  /* -- live status ----------------------------------------------------------------------- */
  /* stale: the builder's snapshot is too old, or no status arrived for that long */
  function isStale(st) {
    return st.stale || (Date.now() - receivedAt) / 1000 > st.stale_after_s;
  }
  function renderBanners() {
    const st = lastStatus;
    const stale = document.getElementById("stale-banner");
    if (st && isStale(st)) {
      const since = st.last_data_utc;
      stale.textContent = since ? `no data since ${clockTime(since)}` : "no data from the DAQ";
      stale.title = since ? `newest data ${utc(since)} (${ago(since)})` : "no builder snapshot received";
      stale.hidden = false;
    } else {
      stale.hidden = true;
    }
    const db = document.getElementById("db-banner");
    const down = st && !st.database_ok ? st.database_error : databaseRefused;
    db.hidden = !down;
    db.textContent = UNAVAILABLE;
    db.title = down || "";
  }
  function alarmBadge(st) {
    if (!st.alarms_known) return pill("alarms unknown", "unknown");
    const open = st.alarms.filter((a) => !a.acked_utc).length;
    if (!st.alarms.length) return pill("no alarms", "good");
    return pill(`${st.alarms.length} alarm${st.alarms.length > 1 ? "s" : ""}` +
      (open ? ` (${open} not acknowledged)` : ""), open ? "critical" : "warning");
  }
  function renderStatusbar(st) {
    const bar = document.getElementById("statusbar");
    const live = !isStale(st);
    const parts = [
      el("span", {
        class: `dot${live ? " live" : ""}`, id: "live-dot",
        title: live ? "live data" : "no live data",
      }),
      el("span", {}, "run ", el("strong", { id: "bar-run" }, st.run ?? "–")),
      pill(st.reachable ? st.state : "unreachable"),
      st.state === "running" ? el("span", { class: "mono" }, duration(st.elapsed_s)) : null,
      st.reactor !== "unknown" ? pill(`reactor ${st.reactor}`, st.reactor) : null,
      el("span", { class: "sep" }),
      el("a", { href: "/alarms", id: "bar-alarms", title: st.alarms_note || "" }, alarmBadge(st)),
    ];
    bar.replaceChildren(...parts.filter((p) => p !== null));
    renderBanners();
  }
  function show(st) {
    renderStatusbar(st);
    statusListeners.forEach((fn) => fn(st));
  }
  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("status", (ev) => {
      lastStatus = JSON.parse(ev.data);
      receivedAt = Date.now();
      if (lastStatus.database_ok) databaseRefused = null;
      show(lastStatus);
    });
    /* no status for a while (server gone): ages go on and the page turns stale */
    setInterval(() => { if (lastStatus && Date.now() - receivedAt > 1500) show(lastStatus); }, 1000);
  }

  /* run load now and every ms (once if 0); a failure leaves the page as it was, the banners
     say why; returns the runner for reloads */
  function every(ms, load) {
    const run = () => load().catch((err) => console.warn(err.message));
    run();
    if (ms) setInterval(run, ms);
    return run;
  }

  /* -- plots (uPlot) ---------------------------------------------------------------------- */
  /* axis tick labels that stay readable from 1e-10 to 1e6 */
  function ticks(u, splits) {
    return splits.map((v) => {
      if (v === null || v === undefined) return "";
      const a = Math.abs(v);
      if (a !== 0 && (a < 0.01 || a >= 1e6)) return v.toExponential(0);
      return v.toLocaleString("en-US", { maximumFractionDigits: 3 });
    });
  }
  /* time-axis tick labels: local date and time of day, to the second */
  function clock(u, splits) {
    const pad = (n) => String(n).padStart(2, "0");
    const span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
    return splits.map((t) => {
      const d = new Date(t * 1000);
      const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
      if (span > 2 * 86400) return `${d.getMonth() + 1}/${d.getDate()} ${hm}`;
      return span > 3600 ? hm : `${hm}:${pad(d.getSeconds())}`;
    });
  }
  const COLORS = ["#ff9f43", "#5eb1ff", "#7ee298", "#d2a8ff", "#f2cc60", "#ff7b72", "#a5d6ff"];
  function plot(container, opts, data) {
    const width = () => Math.max(300, container.clientWidth);
    const axis = (label) => ({
      stroke: "#93a1b1", label, labelSize: 22,
      grid: { stroke: "#2b3542", width: 1 }, ticks: { stroke: "#2b3542" },
    });
    const defaults = {
      width: width(), height: opts.height || 300,
      cursor: { drag: { x: true, y: false } },
      axes: (opts.axes || []).map((a, i) => {
        const numeric = i > 0 || (opts.scales?.x?.time === false);
        return Object.assign(axis(a.label), numeric ? { values: ticks } : { values: clock, space: 70 }, a);
      }),
    };
    const u = new uPlot(Object.assign({}, opts, defaults, { axes: defaults.axes }), data, container);
    new ResizeObserver(() => u.setSize({ width: width(), height: u.height })).observe(container);
    return u;
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try { session = await api("/api/session"); } catch (e) { /* stays logged out */ }
    renderSession();
    applySession();
    connect();
  });

  return {
    el, api, every, duration, span, num, rate, sci, time, clockTime, utc, age, ago, pill, plot,
    COLORS,
    onStatus: (fn) => { statusListeners.push(fn); if (lastStatus) fn(lastStatus); },
    onSession: (fn) => sessionListeners.push(fn),
    get session() { return session; },
    get status() { return lastStatus; },
  };
})();
