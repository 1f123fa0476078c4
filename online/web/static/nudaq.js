/* nudaq web: what every page shares. DOM is built with textContent only (never innerHTML
   with data), API writes carry the CSRF token, the live status arrives as server-sent events. */
"use strict";

const NUDAQ = (() => {
  const statusListeners = [];
  const sessionListeners = [];
  let session = { logged_in: false, name: null, csrf_token: null };
  let lastStatus = null;

  /* el("td", {class: "num"}, "text", child, ...): an element with text children only. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "class") node.className = value;
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
    if (!response.ok) {
      let detail = data && (data.detail ?? data.error);
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
  function pill(text, kind) { return el("span", { class: `pill ${kind || text}` }, text); }

  /* -- session --------------------------------------------------------------------------- */
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
          sessionListeners.forEach((fn) => fn(session));
        } catch (err) {
          error.textContent = err.status === 401 ? "wrong token" : err.message;
        }
      });
      box.append(form);
    }
  }
  async function logout() {
    await api("/api/logout", { method: "POST" });
    session = { logged_in: false, name: null, csrf_token: null };
    renderSession();
    sessionListeners.forEach((fn) => fn(session));
  }

  /* -- live status ----------------------------------------------------------------------- */
  function renderStatusbar(st) {
    const bar = document.getElementById("statusbar");
    const open = st.alarms.filter((a) => !a.acked_utc).length;
    const parts = [
      el("span", { class: "dot live", id: "live-dot", title: "live updates" }),
      el("span", {}, "run ", el("strong", { id: "bar-run" }, st.run ?? "–")),
      pill(st.reachable ? st.state : "unreachable"),
      st.state === "running" ? el("span", { class: "mono" }, duration(st.elapsed_s)) : null,
      st.reactor !== "unknown" ? pill(`reactor ${st.reactor}`, st.reactor) : null,
      el("span", { class: "sep" }),
      el("a", { href: "/alarms", id: "bar-alarms" },
        st.alarms.length ? pill(`${st.alarms.length} alarm${st.alarms.length > 1 ? "s" : ""}` +
          (open ? ` (${open} not acknowledged)` : ""), open ? "critical" : "warning") :
          pill("no alarms", "good")),
    ];
    bar.replaceChildren(...parts.filter((p) => p !== null));
  }
  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("status", (ev) => {
      lastStatus = JSON.parse(ev.data);
      renderStatusbar(lastStatus);
      statusListeners.forEach((fn) => fn(lastStatus));
    });
    source.onerror = () => {
      const dot = document.getElementById("live-dot");
      if (dot) dot.classList.remove("live");
    };
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
    sessionListeners.forEach((fn) => fn(session));
    connect();
  });

  return {
    el, api, duration, span, num, sci, time, pill, plot, COLORS,
    onStatus: (fn) => { statusListeners.push(fn); if (lastStatus) fn(lastStatus); },
    onSession: (fn) => sessionListeners.push(fn),
    get session() { return session; },
    get status() { return lastStatus; },
  };
})();
