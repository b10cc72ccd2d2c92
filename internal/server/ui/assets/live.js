// Live updates for Kolejka's web UI: a page that follows tasks (an
// element with data-live-tasks="K1 K2 …") or a workflow run (an SVG with
// data-live-run="KEY") opens one EventSource and changes what it shows as
// events come; a part with data-refresh is fetched again now and then.
// Without this script the pages read the same, only still.
"use strict";
(function () {
  const base = document.body.dataset.base;
  function follow(query, handlers) {
    const es = new EventSource(base + "events/?" + query);
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (e) => fn(JSON.parse(e.data)));
    }
    return es;
  }
  function setState(cell, state) {
    if (!cell || cell.textContent === state) return;
    cell.textContent = state;
    cell.className = cell.className.replace(/\bs-\S+/g, "").trim() + " s-" + state;
  }
  const tasks = document.querySelector("[data-live-tasks]");
  if (tasks && tasks.dataset.liveTasks.trim() !== "") {
    const single = tasks.classList.contains("task");
    follow("tasks=" + encodeURIComponent(tasks.dataset.liveTasks), {
      task: (t) => {
        const row = single ? tasks : tasks.querySelector('[data-task="' + CSS.escape(t.key) + '"]');
        if (!row) return;
        const before = row.querySelector(".state").textContent;
        setState(row.querySelector(".state"), t.state);
        for (const [sel, value] of [[".status", t.status], [".node", t.node], [".finished", t.finish]]) {
          const cell = row.querySelector(sel);
          if (cell) cell.textContent = value || "";
        }
        if (single && before !== t.state) refresh([".attempts", "#result", ".actions", ".facts"]);
      },
    });
  }
  // A page fetches itself again and swaps in the parts (selectors) that
  // change with a state (attempts, result, buttons, a run's steps),
  // without reloading.
  function refresh(selectors) {
    fetch(location.href, { credentials: "same-origin" })
      .then((r) => r.text())
      .then((html) => {
        const doc = new DOMParser().parseFromString(html, "text/html");
        for (const sel of selectors) {
          const now = document.querySelector(sel), fresh = doc.querySelector(sel);
          if (now && fresh) now.replaceWith(fresh);
        }
      });
  }
  // A part with data-refresh="N" and an id (the nodes' health and last
  // contact) is fetched again every N seconds.
  for (const el of document.querySelectorAll("[data-refresh][id]")) {
    const secs = Number(el.dataset.refresh) || 5;
    setInterval(() => refresh(["#" + CSS.escape(el.id)]), secs * 1000);
  }
  const run = document.querySelector("[data-live-run]");
  if (run) {
    let first = true;
    follow("run=" + encodeURIComponent(run.dataset.liveRun), {
      run: (ev) => {
        if (!first) refresh(["table.steps", ".facts", ".actions"]);
        first = false;
        for (const [name, state] of Object.entries(ev.steps)) {
          const g = run.querySelector('[data-step="' + CSS.escape(name) + '"]');
          if (!g) continue;
          g.setAttribute("class", "step st-" + state);
          const label = g.querySelector(".sstate");
          if (label) label.textContent = state;
        }
        const rs = document.querySelector(".runstate");
        if (rs) { rs.textContent = ev.state; rs.className = "runstate r-" + ev.state; }
      },
    });
  }
})();
