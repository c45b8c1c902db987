// A run as its stage graph, kept live by asking GET /runs/{id} again every second until the run
// has ended; durations of running stages tick in between. Cancel (while active) and Retry (once
// failed or cancelled) show only when GET /projects/{id} says the user's role may (developer+).
import { atLeast, request } from "../api.js";
import { duration, elapsed, h, statusBadge, TERMINAL_RUN, when } from "../dom.js";
import { StageGraph } from "../graph.js";
import { markRendered } from "../ready.js";

const POLL_MS = 1000;
const ACTIVE_RUN = new Set(["requested", "queued", "running"]);
const RETRYABLE_RUN = new Set(["failed", "cancelled"]);

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
  let role = null; // the user's role in the run's project, once known
  let last = null;
  let changingFrom = null; // after Cancel/Retry: keep polling until the status moves on from this
  let changingUntil = 0; // …for at most this long (ms since the epoch)
  const actions = h("p", { class: "run-actions", id: "run-actions" });
  const refused = h("p", { class: "error", role: "alert", id: "run-action-error" });

  async function act(what, label) {
    refused.textContent = "";
    for (const button of actions.querySelectorAll("button")) button.disabled = true;
    try {
      await request(`/runs/${runId}/${what}`, { method: "POST" });
      changingFrom = last?.status ?? null;
      changingUntil = Date.now() + 30_000;
      actions.replaceChildren(h("span", { class: "muted", role: "status" }, `${label} requested…`));
      clearTimeout(timer);
      if (!stopped) refresh();
    } catch (exc) {
      refused.textContent = exc.message; // the API's problem detail, e.g. why it refused
      showActions(last);
    }
  }

  function showActions(run) {
    if (!run || !role || !atLeast(role, "developer")) return actions.replaceChildren();
    const buttons = [];
    if (ACTIVE_RUN.has(run.status)) {
      buttons.push(run.cancel_requested_at
        ? h("button", { type: "button", id: "cancel-run", disabled: true }, "Cancel requested")
        : h("button", { type: "button", id: "cancel-run", class: "secondary", onclick: () => act("cancel", "Cancel") }, "Cancel run"));
    }
    if (RETRYABLE_RUN.has(run.status)) {
      buttons.push(h("button", { type: "button", id: "retry-run", onclick: () => act("retry", "Retry") }, "Retry run"));
    }
    actions.replaceChildren(...buttons);
  }

  async function loadRole(projectId) {
    try {
      role = (await request(`/projects/${projectId}`)).role;
    } catch {
      role = null; // no buttons; the page still shows the run
    }
    actions.dataset.role = role ?? ""; // the buttons below are decided
    if (!stopped) showActions(last);
  }

  function show(run) {
    title.textContent = `Run #${run.number}`;
    document.title = `Run #${run.number} · Comet`;
    last = run;
    if (!projectShown) {
      projectShown = true;
      loadRole(run.project_id);
      crumbs.append(" / ", h("a", { href: `#/projects/${run.project_id}`, id: "project-link" }, "Project runs"));
    }
    summary.dataset.status = run.status;
    summary.replaceChildren(
      h("p", {}, statusBadge(run.status), ` ${run.ref} `, h("code", {}, (run.sha ?? "").slice(0, 10)),
        ` · created ${when(run.created_at)}`,
        run.started_at ? ` · ${duration(elapsed(run.started_at, run.finished_at))}` : ""),
      run.failure_reason ? h("p", { class: "error" }, run.failure_reason) : "",
    );
    if (changingFrom === null || run.status !== changingFrom || Date.now() > changingUntil) {
      changingFrom = null;
      showActions(run);
    }
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
      done = TERMINAL_RUN.has(run.status) && changingFrom === null;
    } catch (exc) {
      problem.textContent = exc.message;
      done = exc.status === 404;
    }
    clearTimeout(timer); // one poll loop, even when an action asked for a refresh meanwhile
    if (!stopped && !done) timer = setTimeout(refresh, POLL_MS);
    if (done) {
      clearInterval(ticker);
      ticker = null;
    } else if (!stopped && ticker === null) ticker = setInterval(() => graph.tick(), 1000);
  }

  refresh();
  ticker = setInterval(() => graph.tick(), 1000);
  const node = h("section", {}, crumbs, title, summary, actions, refused, problem, h("p", {}, h("a", { href: `#/runs/${runId}/tests`, id: "tests-link" }, "Test results and coverage")), h("h2", {}, "Stages"), graph.root);
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
