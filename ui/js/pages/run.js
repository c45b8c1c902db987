// A run as its stage graph, kept live by asking GET /runs/{id} again every second until the run
// has ended; durations of running stages tick in between.
import { request } from "../api.js";
import { duration, elapsed, h, statusBadge, TERMINAL_RUN, when } from "../dom.js";
import { StageGraph } from "../graph.js";
import { markRendered } from "../ready.js";

const POLL_MS = 1000;

export function runPage(runId) {
  const graph = new StageGraph(runId);
  const title = h("h1", {}, "Run");
  const crumbs = h("p", { class: "breadcrumbs" }, h("a", { href: "#/projects" }, "Projects"));
  const summary = h("div", { id: "run-summary", "aria-live": "polite" });
  const problem = h("p", { class: "error", role: "alert" });
  let timer = null;
  let ticker = null;
  let stopped = false;
  let projectShown = false;

  function show(run) {
    title.textContent = `Run #${run.number}`;
    document.title = `Run #${run.number} · Comet`;
    if (!projectShown) {
      projectShown = true;
      crumbs.append(" / ", h("a", { href: `#/projects/${run.project_id}`, id: "project-link" }, "Project runs"));
    }
    summary.dataset.status = run.status;
    summary.replaceChildren(
      h("p", {}, statusBadge(run.status), ` ${run.ref} `, h("code", {}, (run.sha ?? "").slice(0, 10)),
        ` · created ${when(run.created_at)}`,
        run.started_at ? ` · ${duration(elapsed(run.started_at, run.finished_at))}` : ""),
      run.failure_reason ? h("p", { class: "error" }, run.failure_reason) : "",
    );
    graph.update(run.stages);
    if (run.stages.length) markRendered(graph.root, graph.nodes.size, "comet:run-ready");
  }

  async function refresh() {
    let done = false;
    try {
      const run = await request(`/runs/${runId}`);
      if (stopped) return;
      show(run);
      problem.textContent = "";
      done = TERMINAL_RUN.has(run.status);
    } catch (exc) {
      problem.textContent = exc.message;
      done = exc.status === 404;
    }
    if (!stopped && !done) timer = setTimeout(refresh, POLL_MS);
    if (done) clearInterval(ticker);
  }

  refresh();
  ticker = setInterval(() => graph.tick(), 1000);
  const node = h("section", {}, crumbs, title, summary, problem, h("p", {}, h("a", { href: `#/runs/${runId}/tests`, id: "tests-link" }, "Test results and coverage")), h("h2", {}, "Stages"), graph.root);
  return {
    node,
    leave: () => {
      stopped = true;
      clearTimeout(timer);
      clearInterval(ticker);
      graph.destroy();
    },
  };
}
