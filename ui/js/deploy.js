// What the environments pages share: who may review or roll back (the API's rules mirrored, so a
// button shows only when the API would take it), and one deployment as a table row whose review
// form survives the 2-second refreshes (what a reviewer typed is kept).
import { atLeast, request } from "./api.js";
import { duration, elapsed, h, statusBadge, when } from "./dom.js";

const REVIEW_ROLE = "maintainer"; // api/permissions.py: Action.APPROVE_DEPLOYS

export function short(id) {
  return id ? String(id).slice(0, 8) : "";
}

function person(userId, me) {
  if (!userId) return "—";
  return userId === me.id ? "you" : `user ${short(userId)}`;
}

// orchestrator/deployments.py self_approval_allowed: never when two or more approvals are required.
function selfApprovalAllowed(env, deployment) {
  return (env?.allow_self_approval ?? true) && deployment.required_approvals < 2;
}

// Why this user gets no review buttons on a waiting deployment (null: they may review it).
export function reviewBlocker(deployment, env, role, me) {
  if (deployment.status !== "waiting") return "not waiting for a review";
  if (!atLeast(role, REVIEW_ROLE)) return "reviews need maintainer or above";
  const approvals = deployment.approvals.filter((a) => a.decision === "approved");
  if (approvals.length >= deployment.required_approvals) return "has all its approvals";
  if (deployment.approvals.some((a) => a.user_id === me.id)) return "you reviewed it";
  if (deployment.triggered_by === me.id && !selfApprovalAllowed(env, deployment)) {
    return "you triggered it: someone else must approve";
  }
  return null;
}

export function mayRollBack(deployment, env, role) {
  return atLeast(role, REVIEW_ROLE) && deployment.status === "succeeded" && env?.current?.id !== deployment.id;
}

function approvalsCell(deployment, me) {
  const done = deployment.approvals.filter((a) => a.decision === "approved").length;
  const items = deployment.approvals.map((a) =>
    h("li", { "data-decision": a.decision, "data-user": a.user_id },
      `${a.decision} by ${person(a.user_id, me)}`, a.comment ? `: “${a.comment}”` : "", ` (${when(a.at)})`));
  return h("td", { class: "approvals" },
    deployment.required_approvals ? `${done}/${deployment.required_approvals} approvals` : "no approval needed",
    items.length ? h("ul", {}, items) : "");
}

function reviewForm(deployment, onDone) {
  const id = `comment-${deployment.id}`;
  const comment = h("input", { id, name: "comment", maxlength: "2000", class: "comment" });
  const error = h("p", { class: "error", role: "alert" });
  const approve = h("button", { type: "button", class: "approve", "data-deployment": deployment.id }, "Approve");
  const reject = h("button", { type: "button", class: "reject secondary", "data-deployment": deployment.id }, "Reject");
  const send = async (verb) => {
    error.textContent = "";
    approve.disabled = reject.disabled = true;
    try {
      await request(`/deployments/${deployment.id}/${verb}`, { method: "POST", body: { comment: comment.value } });
      onDone();
    } catch (exc) {
      error.textContent = exc.message; // the API's problem+json `detail`
      approve.disabled = reject.disabled = false;
    }
  };
  approve.addEventListener("click", () => send("approve"));
  reject.addEventListener("click", () => send("reject"));
  return h("div", { class: "review", "data-deployment": deployment.id },
    h("label", { for: id }, "Comment"), comment, h("div", { class: "buttons" }, approve, " ", reject), error);
}

function rollbackControl(deployment, projectId, onDone) {
  const error = h("p", { class: "error", role: "alert" });
  const done = h("span", { class: "started" });
  const button = h("button", { type: "button", class: "rollback secondary", "data-deployment": deployment.id },
    `Roll back to ${(deployment.sha ?? "").slice(0, 7)}`);
  button.addEventListener("click", async () => {
    error.textContent = "";
    button.disabled = true;
    try {
      const started = await request(
        `/projects/${projectId}/environments/${encodeURIComponent(deployment.environment)}/rollback`,
        { method: "POST", body: { deployment_id: deployment.id }, headers: { "Idempotency-Key": crypto.randomUUID() } });
      done.replaceChildren("Started ", h("a", { href: `#/runs/${started.run_id}` }, `run #${started.number}`));
      onDone();
    } catch (exc) {
      error.textContent = exc.message;
      button.disabled = false;
    }
  });
  return h("div", {}, button, " ", done, error);
}

// A table of deployments updated in place: a row is rebuilt only when its deployment changed, and
// a waiting deployment's review form node is kept across rebuilds.
export class DeploymentTable {
  constructor({ projectId, me, role, showEnvironment, onChange }) {
    Object.assign(this, { projectId, me, role, showEnvironment, onChange });
    this.rows = new Map();
    this.forms = new Map();
    this.body = h("tbody", {});
    const heads = ["Status", showEnvironment ? "Environment" : null, "Commit", "Run", "Triggered by",
      "Approvals", "Timings", "Actions"].filter(Boolean);
    this.root = h("table", { class: "deployments" },
      h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))), this.body);
  }

  update(deployments, envOf) {
    const rows = deployments.map((d) => {
      const env = envOf(d.environment);
      const key = JSON.stringify([d, env?.current?.id ?? null, env?.allow_self_approval ?? null]);
      const known = this.rows.get(d.id);
      if (known && known.key === key) return known.row;
      const row = this.row(d, env);
      this.rows.set(d.id, { key, row });
      return row;
    });
    const ids = new Set(deployments.map((d) => d.id));
    for (const id of [...this.rows.keys()]) if (!ids.has(id)) this.rows.delete(id);
    const same = rows.length === this.body.children.length && rows.every((r, i) => this.body.children[i] === r);
    if (!same) this.body.replaceChildren(...rows);
  }

  row(d, env) {
    const blocker = reviewBlocker(d, env, this.role, this.me);
    let actions = "";
    if (d.status === "waiting" && blocker === null) {
      if (!this.forms.has(d.id)) this.forms.set(d.id, reviewForm(d, this.onChange));
      actions = this.forms.get(d.id);
    } else if (d.status === "waiting") {
      actions = h("span", { class: "muted no-review" }, blocker);
    } else if (mayRollBack(d, env, this.role)) {
      actions = rollbackControl(d, this.projectId, this.onChange);
    }
    const took = duration(elapsed(d.started_at, d.finished_at));
    return h("tr", { "data-deployment": d.id, "data-status": d.status },
      h("td", {}, statusBadge(d.status),
        d.rollback_of ? h("span", { class: "rollback-of" }, ` rollback of ${short(d.rollback_of)}`) : "",
        d.reason ? h("div", { class: "muted reason" }, d.reason) : ""),
      this.showEnvironment
        ? h("td", {}, h("a", { href: `#/projects/${this.projectId}/environments/${encodeURIComponent(d.environment)}` }, d.environment))
        : null,
      h("td", {}, h("code", {}, (d.sha ?? "").slice(0, 10)), ` ${d.ref.replace(/^refs\/heads\//, "")}`),
      h("td", {}, h("a", { href: `#/runs/${d.run_id}` }, `run ${short(d.run_id)}`), " · ",
        h("a", { href: `#/runs/${d.run_id}/stages/${encodeURIComponent(d.stage)}` }, d.stage),
        d.url ? h("div", {}, h("a", { href: d.url, rel: "noopener noreferrer" }, d.url)) : ""),
      h("td", {}, person(d.triggered_by, this.me)),
      approvalsCell(d, this.me),
      h("td", { class: "timings" }, `created ${when(d.created_at)}`,
        d.started_at ? h("div", {}, `started ${when(d.started_at)}`) : "",
        took ? h("div", {}, `took ${took}`) : ""),
      h("td", { class: "actions" }, actions));
  }
}
