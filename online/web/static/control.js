/* Run control: start, stop, new run with a comment; shows what run control answered. */
"use strict";
(() => {
  const { el, api, pill, duration } = NUDAQ;
  const answer = document.getElementById("answer");
  const buttons = ["start", "stop", "new-run"].map((id) => document.getElementById(id));

  function show(text, ok) {
    answer.className = `message ${ok ? "ok" : "error"}`;
    answer.textContent = text;
  }

  async function send(command, body) {
    const reply = await api(`/api/run/${command}`, { method: "POST", body });
    return reply;
  }

  async function act(steps) {
    buttons.forEach((b) => { b.disabled = true; });
    const lines = [];
    try {
      for (const [command, body] of steps) {
        show([...lines, `${command}: waiting for run control…`].join("\n"), true);
        const reply = await send(command, body);
        lines.push(command === "start" ? `start: ok, run ${reply.run} started` :
          `stop: ok, run ${reply.summary?.run ?? ""} stopped\n${JSON.stringify(reply.summary, null, 2)}`);
      }
      show(lines.join("\n"), true);
    } catch (err) {
      const why = err.data?.error || err.data?.detail || err.message;
      show([...lines, `refused (${err.status}): ${why}`].join("\n"), false);
    } finally {
      buttons.forEach((b) => { b.disabled = !NUDAQ.session.logged_in; });
    }
  }

  const comment = () => ({ comment: document.getElementById("comment").value });
  document.getElementById("start").addEventListener("click", () => act([["start", comment()]]));
  document.getElementById("stop").addEventListener("click", () => {
    if (window.confirm("Stop the current run?")) act([["stop", undefined]]);
  });
  document.getElementById("new-run").addEventListener("click", () => {
    if (window.confirm("Stop the current run and start a new one?")) {
      act([["stop", undefined], ["start", comment()]]);
    }
  });

  NUDAQ.onStatus((st) => {
    document.getElementById("run-number").textContent = st.run ? `run ${st.run}` : "no run";
    document.getElementById("run-state").replaceChildren(pill(st.reachable ? st.state : "unreachable"));
    document.getElementById("elapsed").textContent = st.state === "running" ? duration(st.elapsed_s) : "–";
    document.getElementById("processes").textContent = st.processes.join("  ") || "–";
  });
  NUDAQ.onSession((s) => { document.getElementById("readonly-note").hidden = s.logged_in; });
})();
