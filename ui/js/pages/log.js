// A stage's log streamed live (GET /runs/{id}/stages/{stage}/logs as Server-Sent Events) with its
// ANSI colours; a dropped stream resumes where it stopped (Last-Event-ID) until the `end` event.
// Every line has a link of its own (`?line=N`: opened, the page scrolls to it once it arrived) and
// the log can be searched (matching lines marked, next / previous, or only the matches shown).
import { events, request } from "../api.js";
import { AnsiRenderer } from "../ansi.js";
import { h, statusBadge } from "../dom.js";
import { LogLines, search } from "../loglines.js";
import { markRendered } from "../ready.js";

const RETRY_MS = 1000;

export function logPage(runId, stageName, params = new URLSearchParams()) {
  const pre = h("pre", { class: "log", id: "log", role: "log", "aria-label": `Log of ${stageName}`, tabindex: "0" });
  const state = h("p", { id: "log-state", "aria-live": "polite" }, "Connecting…");
  const badge = h("span", { id: "stage-status" });
  const controller = new AbortController();
  const base = `#/runs/${runId}/stages/${encodeURIComponent(stageName)}`;
  let wanted = Number(params.get("line")) || null;

  function pick(n) {
    for (const old of pre.querySelectorAll(".line.picked")) old.classList.remove("picked");
    const line = lines.get(n);
    if (!line) return false;
    line.classList.add("picked");
    line.scrollIntoView({ block: "center" });
    history.replaceState(null, "", `${base}?line=${n}`);
    return true;
  }
  const lines = new LogLines(pre, (n) => `${base}?line=${n}`, pick);
  let renderer = new AnsiRenderer(lines);
  let lastId = null;
  let stopped = false;

  // Search: matching lines marked; Enter / the buttons go to the next or previous one.
  const query = h("input", { id: "log-search", type: "search", placeholder: "Search the log" });
  const only = h("input", { id: "log-only", type: "checkbox" });
  const found = h("span", { id: "log-found", "aria-live": "polite" });
  let matches = [];
  let at = -1;
  function go(step) {
    if (!matches.length) return;
    at = (at + step + matches.length) % matches.length;
    pick(Number(matches[at].dataset.n));
    found.textContent = `${at + 1} of ${matches.length} matching lines`;
  }
  function refresh() {
    matches = search(lines, query.value);
    at = -1;
    pre.classList.toggle("only-matches", only.checked && query.value.trim() !== "");
    found.textContent = query.value.trim() ? `${matches.length} matching lines` : "";
  }
  let pending = null;
  query.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(refresh, 150);
  });
  query.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    clearTimeout(pending);
    if (!matches.length || matches[0].isConnected === false) refresh();
    go(event.shiftKey ? -1 : 1);
  });
  only.addEventListener("change", refresh);
  const goto = h("input", { id: "log-goto", type: "number", min: "1", inputmode: "numeric" });
  goto.addEventListener("keydown", (event) => {
    if (event.key === "Enter") pick(Number(goto.value));
  });
  const tools = h("div", { class: "log-tools" },
    h("label", { for: "log-search" }, "Search "), query, " ",
    h("button", { type: "button", id: "log-prev", onclick: () => go(-1) }, "Previous"), " ",
    h("button", { type: "button", id: "log-next", onclick: () => go(1) }, "Next"), " ",
    h("label", {}, only, " only matching lines"), " ", found, " ",
    h("label", { for: "log-goto" }, "Go to line "), goto);

  async function follow() {
    const path = `/runs/${runId}/stages/${encodeURIComponent(stageName)}/logs`;
    while (!stopped) {
      try {
        state.textContent = "Streaming live…";
        state.dataset.state = "streaming";
        for await (const frame of events(path, { signal: controller.signal, lastEventId: lastId })) {
          if (frame.event === "end") {
            const end = JSON.parse(frame.data);
            state.textContent = `Stage ${end.stage_status ?? "gone"}: the log is complete.`;
            state.dataset.state = "ended";
            if (end.stage_status) badge.replaceChildren(statusBadge(end.stage_status));
            markRendered(pre, "complete", "comet:log-complete");
            if (wanted !== null && pick(wanted)) wanted = null;
            if (query.value.trim()) refresh();
            return;
          }
          if (frame.event === "attempt") {
            renderer = new AnsiRenderer(lines);
            lines.marker(`── attempt ${frame.data} ──\n`);
            continue;
          }
          if (frame.id) lastId = frame.id;
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          renderer.write(frame.data);
          lines.flush();
          if (wanted !== null && lines.count > wanted && pick(wanted)) wanted = null;
          else if (atBottom && wanted === null) pre.scrollTop = pre.scrollHeight;
        }
      } catch (exc) {
        if (stopped || exc.name === "AbortError") return;
        state.textContent = `Reconnecting (${exc.message})…`;
        if (exc.status === 404 || exc.status === 403) return;
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  (async () => {
    try {
      const run = await request(`/runs/${runId}`);
      const stage = run.stages.find((s) => s.name === stageName);
      if (stage) badge.replaceChildren(statusBadge(stage.status));
    } catch {
      // The stream below reports what is wrong.
    }
  })();
  follow();
  const node = h("section", {},
    h("p", { class: "breadcrumbs" }, h("a", { href: "#/projects" }, "Projects"), " / ",
      h("a", { href: `#/runs/${runId}`, id: "run-link" }, "Run")),
    h("h1", {}, stageName, " "), badge, state, tools, pre);
  return { node, leave: () => { stopped = true; controller.abort(); } };
}
