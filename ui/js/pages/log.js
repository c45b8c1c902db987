// A stage's log streamed live (GET /runs/{id}/stages/{stage}/logs as Server-Sent Events) with its
// ANSI colours; a dropped stream resumes where it stopped (Last-Event-ID) until the `end` event.
import { events, request } from "../api.js";
import { AnsiRenderer } from "../ansi.js";
import { h, statusBadge } from "../dom.js";
import { markRendered } from "../ready.js";

const RETRY_MS = 1000;

export function logPage(runId, stageName) {
  const pre = h("pre", { class: "log", id: "log", role: "log", "aria-label": `Log of ${stageName}`, tabindex: "0" });
  const state = h("p", { id: "log-state", "aria-live": "polite" }, "Connecting…");
  const badge = h("span", { id: "stage-status" });
  const controller = new AbortController();
  let renderer = new AnsiRenderer(pre);
  let lastId = null;
  let stopped = false;

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
            return;
          }
          if (frame.event === "attempt") {
            renderer = new AnsiRenderer(pre);
            pre.append(h("span", { class: "marker" }, `\n── attempt ${frame.data} ──\n`));
            continue;
          }
          if (frame.id) lastId = frame.id;
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          renderer.write(frame.data);
          if (atBottom) pre.scrollTop = pre.scrollHeight;
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
    h("h1", {}, stageName, " "), badge, state, pre);
  return { node, leave: () => { stopped = true; controller.abort(); } };
}
