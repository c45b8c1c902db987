// A project's environments (protection rules, current deployment, the line waiting for it) and
// one environment's deployment history, from the public REST API only (GET …/environments and
// …/deployments), asked again every two seconds while the page is open. Approve / Reject show on a
// waiting deployment only for the users the API would take them from; Rollback likewise.
import { request } from "../api.js";
import { DeploymentTable, short } from "../deploy.js";
import { duration, h, statusBadge } from "../dom.js";

const POLL_MS = 2000;

function rules(env) {
  const items = [
    env.required_approvals
      ? `${env.required_approvals} approval${env.required_approvals > 1 ? "s" : ""} by maintainers`
      : "no approval needed",
    env.allow_self_approval && env.required_approvals < 2
      ? "the triggerer may approve"
      : "the triggerer may not approve",
    env.branches.length ? `branches: ${env.branches.join(", ")}` : "any branch",
    env.wait_timer ? `wait ${duration(env.wait_timer)} after approval` : "no wait timer",
  ];
  if (!env.configured) items.push("never configured (defaults)");
  return h("ul", { class: "rules" }, items.map((t) => h("li", {}, t)));
}

function current(env) {
  const d = env.current;
  if (!d) return h("p", { class: "current muted" }, "Nothing deployed yet.");
  return h("p", { class: "current", "data-deployment": d.id, "data-status": d.status },
    "Current: ", statusBadge(d.status), " ", h("code", {}, (d.sha ?? "").slice(0, 10)),
    ` from run ${short(d.run_id)}`, d.rollback_of ? ` (rollback of ${short(d.rollback_of)})` : "");
}

// Shared by both pages: who is asking, in which role, and a poll loop that stops with the page.
function livePage(projectId, heading, load) {
  const status = h("p", { class: "muted", "aria-live": "polite" }, "Loading…");
  const body = h("div", {});
  const title = h("h1", {}, heading);
  const crumbs = h("p", { class: "breadcrumbs" }, h("a", { href: "#/projects" }, "Projects"));
  let timer = null;
  let stopped = false;
  let ctx = null;

  async function refresh() {
    clearTimeout(timer);
    try {
      await load(ctx, body);
      if (stopped) return;
      status.textContent = "";
    } catch (exc) {
      status.textContent = exc.message;
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }

  (async () => {
    try {
      const [project, me] = await Promise.all([request(`/projects/${projectId}`), request("/users/me")]);
      ctx = { project, me, refresh: () => refresh() };
      crumbs.append(" / ", h("a", { href: `#/projects/${projectId}`, id: "project-link" }, project.name));
      title.after(h("p", { class: "muted", id: "role" }, `Your role: ${project.role}`));
      refresh();
    } catch (exc) {
      status.textContent = exc.message;
      status.className = "error";
    }
  })();

  const node = h("section", {}, crumbs, title, status, body);
  return { node, leave: () => { stopped = true; clearTimeout(timer); } };
}

export function environmentsPage(projectId) {
  let table = null;
  const cards = h("div", { class: "environments", id: "environments" });
  return livePage(projectId, "Environments", async (ctx, body) => {
    const [envs, deps] = await Promise.all([
      request(`/projects/${projectId}/environments`),
      request(`/projects/${projectId}/deployments?limit=50`),
    ]);
    table ??= new DeploymentTable({
      projectId, me: ctx.me, role: ctx.project.role, showEnvironment: true, onChange: ctx.refresh,
    });
    if (!body.firstChild) body.append(cards, h("h2", {}, "Recent deployments"), table.root);
    const byName = new Map(envs.data.map((e) => [e.name, e]));
    cards.replaceChildren(...envs.data.map((env) =>
      h("section", { class: "card environment", "data-environment": env.name, "aria-label": env.name },
        h("h2", {}, h("a", { href: `#/projects/${projectId}/environments/${encodeURIComponent(env.name)}` }, env.name)),
        rules(env), current(env),
        env.waiting.length ? h("p", { class: "waiting" }, `${env.waiting.length} waiting`) : "")));
    if (!envs.data.length) cards.replaceChildren(h("p", { class: "muted" }, "No environments yet."));
    table.update(deps.data, (name) => byName.get(name));
  });
}

export function environmentPage(projectId, name) {
  let table = null;
  const head = h("div", { id: "environment", "data-environment": name });
  const path = encodeURIComponent(name);
  return livePage(projectId, `Environment ${name}`, async (ctx, body) => {
    const [env, deps] = await Promise.all([
      request(`/projects/${projectId}/environments/${path}`),
      request(`/projects/${projectId}/deployments?environment=${path}&limit=100`),
    ]);
    table ??= new DeploymentTable({
      projectId, me: ctx.me, role: ctx.project.role, showEnvironment: false, onChange: ctx.refresh,
    });
    if (!body.firstChild) body.append(head, h("h2", {}, "Deployments"), table.root);
    head.replaceChildren(rules(env), current(env));
    table.update(deps.data, () => env);
  });
}
