/* Logbook: entries (text always as text, never as HTML), search, and a shifter's new entry. */
"use strict";
(() => {
  const { el, api, time } = NUDAQ;

  function entry(e) {
    return el("div", { class: `entry${e.automatic ? " automatic" : ""}`, "data-id": e.id },
      el("div", { class: "meta" },
        el("span", {}, time(e.time_utc)),
        el("strong", {}, e.author),
        e.run_number ? el("span", {}, `run ${e.run_number}`) : null,
        e.automatic ? el("span", {}, "automatic") : null),
      el("div", { class: "text" }, e.text));
  }

  async function load() {
    const params = new URLSearchParams();
    const q = document.getElementById("search").value.trim();
    const run = document.getElementById("search-run").value;
    if (q) params.set("q", q);
    if (run) params.set("run", run);
    let entries = await api(`/api/logbook?${params}`);
    if (document.getElementById("hide-auto").checked) entries = entries.filter((e) => !e.automatic);
    document.getElementById("entries").replaceChildren(...(entries.length ? entries.map(entry) :
      [el("p", { class: "dim" }, "no entries")]));
  }

  document.getElementById("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); reload(); });
  document.getElementById("hide-auto").addEventListener("change", () => reload());
  document.getElementById("entry-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = document.getElementById("entry-text");
    const run = document.getElementById("entry-run").value;
    const msg = document.getElementById("entry-message");
    try {
      await api("/api/logbook", {
        method: "POST", body: { text: text.value, run_number: run ? Number(run) : null },
      });
      text.value = "";
      msg.className = "hint";
      msg.textContent = "written";
    } catch (err) {
      msg.className = "error-text";
      msg.textContent = `refused: ${err.message}`;
    }
    reload();
  });
  NUDAQ.onSession((s) => { document.getElementById("readonly-note").hidden = s.logged_in; });
  const reload = NUDAQ.every(15000, load);
})();
