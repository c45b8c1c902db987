// A project's runs, newest first, kept live by asking GET /projects/{id}/runs again every two
// seconds while the page is open (the API has no run-status stream yet). The "Trigger run" form
// shows only when the API says the user's role in the project may trigger (developer and up).
import { atLeast, request } from "../api.js";
import { duration, elapsed, h, statusBadge, when } from "../dom.js";

const POLL_MS = 2000;

function shortRef(ref) {
  return ref.replace(/^refs\/heads\//, "");
}

function runRow(run) {
  return h("tr", { "data-run": run.id, "data-status": run.status },
    h("td", {}, h("a", { href: `#/runs/${run.id}` }, `#${run.number}`)),
    h("td", {}, statusBadge(run.status)),
    h("td", {}, shortRef(run.ref)),
    h("td", {}, h("code", {}, (run.sha ?? "").slice(0, 10))),
    h("td", {}, run.trigger?.kind ?? ""),
    h("td", {}, when(run.created_at)),
    h("td", {}, duration(elapsed(run.started_at, run.finished_at))));
}

function triggerForm(project) {
  const error = h("p", { class: "error", role: "alert" });
  const ref = h("input", { id: "trigger-ref", name: "ref", value: project.default_branch, required: true });
  const button = h("button", { type: "submit", id: "trigger-run" }, "Trigger run");
  const form = h("form", { class: "toolbar", "aria-label": "Trigger a run" },
    h("div", {}, h("label", { for: "trigger-ref" }, "Branch or ref"), ref), button, error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    button.disabled = true;
    try {
      const accepted = await request(`/projects/${project.id}/runs`, {
        method: "POST",
        body: { ref: ref.value },
        headers: { "Idempotency-Key": crypto.randomUUID() },
      });
      location.hash = `#/runs/${accepted.run_id}`;
    } catch (exc) {
      error.textContent = exc.message;
      button.disabled = false;
    }
  });
  return form;
}

export function projectPage(projectId) {
  const title = h("h1", {}, "Project");
  const actions = h("div", {});
  const table = h("tbody", {});
  const status = h("p", { class: "muted", "aria-live": "polite" }, "Loading runs…");
  let timer = null;
  let stopped = false;

  async function refresh() {
    try {
      const page = await request(`/projects/${projectId}/runs?limit=50`);
      if (stopped) return;
      table.replaceChildren(...page.data.map(runRow));
      status.textContent = page.data.length ? "" : "No runs yet.";
    } catch (exc) {
      status.textContent = exc.message;
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }

  (async () => {
    try {
      const project = await request(`/projects/${projectId}`);
      title.textContent = project.name;
      document.title = `${project.name} · Comet`;
      title.after(h("p", { class: "muted", id: "role" }, `Your role: ${project.role}`),
        h("p", {}, h("a", { href: `#/projects/${projectId}/environments`, id: "environments-link" }, "Environments and deployments")));
      if (atLeast(project.role, "developer")) actions.append(triggerForm(project));
      refresh();
    } catch (exc) {
      status.textContent = exc.message;
      status.className = "error";
    }
  })();

  const node = h("section", {},
    h("p", { class: "breadcrumbs" }, h("a", { href: "#/projects" }, "Projects")),
    title, actions,
    h("p", { class: "links" }, h("a", { href: `#/projects/${projectId}/coverage`, id: "coverage-link" }, "Coverage trend"),
      " · ", h("a", { href: `#/projects/${projectId}/insights`, id: "insights-link" }, "Insights")),
    h("h2", {}, "Runs"),
    h("table", { id: "runs" },
      h("thead", {}, h("tr", {}, ["Run", "Status", "Ref", "Commit", "Trigger", "Created", "Duration"].map((t) => h("th", { scope: "col" }, t)))),
      table),
    status);
  return { node, leave: () => { stopped = true; clearTimeout(timer); } };
}
