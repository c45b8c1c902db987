// A run's test results: failures first, then flaky tests, then the rest; flaky and quarantined
// spelt out in text; a filter box; the run's coverage with a link to its branch's trend.
// Quarantine / release buttons show only when the API says the user's role in the project may
// use them (`manage_tests`: maintainer and up, api/permissions.py). While the run is still going
// the page asks again every few seconds.
import { atLeast, request } from "../api.js";
import { h, statusBadge, TERMINAL_RUN } from "../dom.js";
import { branchOf, count, pct, secs } from "../figures.js";

const POLL_MS = 3000;
const PAGE = 500;
const MAX_PAGES = 20;

// failed/errored, then flaky, then passed, then skipped; by stage, class and name within.
export function rank(c) {
  if (c.status === "failed" || c.status === "errored") return 0;
  if (c.flaky) return 1;
  return c.status === "passed" ? 2 : 3;
}

export function ordered(cases) {
  const key = (c) => [rank(c), c.stage, c.classname, c.name];
  return [...cases].sort((a, b) => {
    const ka = key(a), kb = key(b);
    for (let i = 0; i < ka.length; i++) {
      if (ka[i] < kb[i]) return -1;
      if (ka[i] > kb[i]) return 1;
    }
    return a.id - b.id;
  });
}

async function allPages(path) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < MAX_PAGES; i++) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await request(`${path}${sep}limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    out.push(...page.data);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return out;
}

function summaryText(s) {
  const parts = [["failed", s.failed], ["errored", s.errored], ["flaky", s.flaky], ["quarantined", s.quarantined],
    ["passed", s.passed], ["skipped", s.skipped]].filter(([, n]) => n > 0).map(([w, n]) => `${n} ${w}`);
  return `${s.total} ${s.total === 1 ? "test" : "tests"}${parts.length ? `: ${parts.join(", ")}` : ""} · ${secs(s.duration_s)}`;
}

function coverageBlock(cov, run) {
  const trend = h("a", { id: "coverage-trend-link",
    href: `#/projects/${run.project_id}/coverage?branch=${encodeURIComponent(branchOf(run.ref))}` },
    `Coverage trend of ${branchOf(run.ref)}`);
  if (!cov.overall) return [h("p", { id: "run-coverage", class: "muted" }, "No coverage measured in this run. "), h("p", {}, trend)];
  const o = cov.overall;
  const delta = cov.delta === null || cov.delta === undefined ? ""
    : ` · ${cov.delta >= 0 ? "+" : ""}${cov.delta} points against ${branchOf(cov.base.ref)} (run #${cov.base.run_number})`;
  return [
    h("p", { id: "run-coverage", dataset: { lineRate: o.line_rate ?? "" } },
      h("strong", {}, `Line coverage ${pct(o.line_rate)}`), ` (${o.lines_covered} of ${o.lines_valid} lines)`,
      ` · branch coverage ${pct(o.branch_rate)}`, o.branches_valid ? ` (${o.branches_covered} of ${o.branches_valid})` : "", delta),
    cov.stages.length > 1 ? h("ul", {}, cov.stages.map((s) => h("li", {}, `${s.stage}: lines ${pct(s.line_rate)}, branches ${pct(s.branch_rate)}`))) : "",
    h("p", {}, trend),
  ];
}

export function testsPage(runId) {
  const title = h("h1", {}, "Test results");
  const crumbs = h("p", { class: "breadcrumbs" }, h("a", { href: "#/projects" }, "Projects"));
  const summary = h("p", { id: "tests-summary", "aria-live": "polite" }, "Loading test results…");
  const coverage = h("div", { id: "coverage" });
  const problem = h("p", { class: "error", role: "alert" });
  const announce = h("p", { class: "muted", id: "tests-announce", "aria-live": "polite" });
  const filter = h("input", { id: "test-filter", type: "search", placeholder: "name, class, stage, status…", autocomplete: "off" });
  const shown = h("p", { class: "muted", id: "tests-shown", "aria-live": "polite" });
  const body = h("tbody", {});
  const head = h("tr", {});
  const table = h("table", { id: "tests" }, h("caption", { class: "muted" }, "Failures first, then flaky tests, then the rest"), h("thead", {}, head), body);
  const rows = new Map(); // row -> searchable text
  let cases = [];
  let quarantined = new Set();
  let project = null;
  let canManage = false;
  let timer = null;
  let stopped = false;
  let crumbsShown = false;

  function applyFilter() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let visible = 0;
    for (const [row, text] of rows) {
      row.hidden = !words.every((w) => text.includes(w));
      if (!row.hidden) visible += 1;
    }
    shown.textContent = words.length ? `Showing ${visible} of ${rows.size} tests` : "";
  }

  async function toggle(c, button) {
    const was = quarantined.has(c.key);
    button.disabled = true;
    problem.textContent = "";
    try {
      const path = `/projects/${project.id}/tests/quarantine/${encodeURIComponent(c.key)}`;
      if (was) await request(path, { method: "DELETE" });
      else await request(path, { method: "PUT", body: { reason: "quarantined from the dashboard" } });
      if (was) quarantined.delete(c.key);
      else quarantined.add(c.key);
      announce.textContent = `${c.name} ${was ? "released: its failures fail its stage again" : "quarantined: its failures no longer fail its stage"} from the next run on.`;
      render();
      body.querySelector(`tr[data-key="${CSS.escape(c.key)}"] button`)?.focus();
    } catch (exc) {
      problem.textContent = exc.message;
      button.disabled = false;
    }
  }

  function row(c) {
    const isQuarantined = quarantined.has(c.key);
    const marks = [
      c.flaky ? h("span", { class: "mark mark-flaky" }, "flaky") : null,
      isQuarantined ? h("span", { class: "mark mark-quarantined" }, "quarantined") : null,
    ];
    const failing = c.status === "failed" || c.status === "errored";
    const details = c.message
      ? h("details", { class: "message" }, h("summary", {}, failing ? "Failure message" : "Message"), h("pre", {}, c.message))
      : null;
    const cells = [
      h("td", {}, h("span", { class: "classname" }, c.classname), h("span", { class: "testname" }, c.name),
        c.file ? h("span", { class: "muted file" }, c.file + (c.line ? `:${c.line}` : "")) : null, details),
      h("td", {}, c.stage, c.attempt > 1 ? h("span", { class: "muted" }, ` (attempt ${c.attempt})`) : null),
      h("td", { class: "test-status" }, statusBadge(c.status), " ", marks),
      h("td", {}, secs(c.duration_s)),
    ];
    if (canManage) {
      const button = h("button", { type: "button", class: isQuarantined ? "secondary release" : "secondary quarantine",
        "aria-label": `${isQuarantined ? "Release" : "Quarantine"} ${c.classname} ${c.name}` }, isQuarantined ? "Release" : "Quarantine");
      button.addEventListener("click", () => toggle(c, button));
      cells.push(h("td", {}, button));
    }
    const tr = h("tr", { dataset: { key: c.key, status: c.status, flaky: String(c.flaky), quarantined: String(isQuarantined) } }, cells);
    rows.set(tr, [c.classname, c.name, c.stage, c.status, c.file ?? "", c.message ?? "",
      c.flaky ? "flaky" : "", isQuarantined ? "quarantined" : ""].join(" ").toLowerCase());
    return tr;
  }

  function render() {
    const columns = ["Test", "Stage", "Status", "Duration"];
    if (canManage) columns.push("Quarantine");
    head.replaceChildren(...columns.map((t) => h("th", { scope: "col" }, t)));
    rows.clear();
    body.replaceChildren(...ordered(cases).map(row));
    applyFilter();
  }

  async function load() {
    let done = false;
    try {
      const run = await request(`/runs/${runId}`);
      if (stopped) return;
      title.textContent = `Test results of run #${run.number}`;
      document.title = `${title.textContent} · Comet`;
      if (!crumbsShown) {
        crumbsShown = true;
        crumbs.append(" / ", h("a", { href: `#/projects/${run.project_id}` }, "Project runs"),
          " / ", h("a", { href: `#/runs/${run.id}`, id: "run-link" }, `Run #${run.number}`));
      }
      project ??= await request(`/projects/${run.project_id}`);
      canManage = atLeast(project.role, "maintainer");
      const [results, found, cov, held] = await Promise.all([
        request(`/runs/${runId}/tests`),
        allPages(`/runs/${runId}/tests/cases`),
        request(`/runs/${runId}/coverage`),
        allPages(`/projects/${run.project_id}/tests/quarantine`),
      ]);
      if (stopped) return;
      done = TERMINAL_RUN.has(run.status);
      cases = found;
      quarantined = new Set(held.map((q) => q.key));
      summary.replaceChildren(summaryText(results.summary),
        done ? "" : h("span", { class: "muted" }, ` · the run is ${run.status}: results so far`));
      summary.dataset.total = count(results.summary.total);
      coverage.replaceChildren(...coverageBlock(cov, run));
      render();
      problem.textContent = "";
    } catch (exc) {
      problem.textContent = exc.message;
      done = exc.status === 404 || exc.status === 403;
    }
    if (!stopped && !done) timer = setTimeout(load, POLL_MS);
  }

  filter.addEventListener("input", applyFilter);
  load();
  const node = h("section", {}, crumbs, title, summary, problem,
    h("h2", {}, "Coverage"), coverage,
    h("h2", {}, "Tests"),
    h("div", { class: "toolbar" }, h("div", {}, h("label", { for: "test-filter" }, "Filter tests"), filter), shown),
    announce, table);
  return { node, leave: () => { stopped = true; clearTimeout(timer); } };
}
