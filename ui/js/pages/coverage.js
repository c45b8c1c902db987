// A branch's coverage trend (`#/projects/ID/coverage?branch=main`): GET /projects/{id}/coverage,
// oldest to newest as an SVG line chart of the line rate, one dot per run, and the same numbers
// in a table. The branch defaults to the project's default branch.
import { request } from "../api.js";
import { h, when } from "../dom.js";
import { lineChart } from "../charts.js";
import { branchOf, pct } from "../figures.js";

const LIMIT = 100;

function trendTable(points) {
  return h("table", { id: "coverage-table" },
    h("caption", { class: "muted" }, "Coverage per run, newest first"),
    h("thead", {}, h("tr", {}, ["Run", "Commit", "Created", "Line coverage", "Branch coverage"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, points.map((p) => h("tr", { dataset: { run: p.run_id } },
      h("td", {}, h("a", { href: `#/runs/${p.run_id}/tests` }, `#${p.run_number}`)),
      h("td", {}, h("code", {}, (p.sha ?? "").slice(0, 10))),
      h("td", {}, when(p.created_at)),
      h("td", { class: "line-rate" }, pct(p.line_rate)),
      h("td", {}, pct(p.branch_rate))))));
}

export function coveragePage(projectId, params) {
  const title = h("h1", {}, "Coverage trend");
  const status = h("p", { class: "muted", "aria-live": "polite" }, "Loading coverage…");
  const chart = h("figure", { class: "chart-box" });
  const table = h("div", {});
  const branch = h("input", { id: "coverage-branch", name: "branch", value: params.get("branch") ?? "", required: true });
  const form = h("form", { class: "toolbar", "aria-label": "Choose a branch" },
    h("div", {}, h("label", { for: "coverage-branch" }, "Branch"), branch),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/projects/${projectId}/coverage?branch=${encodeURIComponent(branch.value.trim())}`;
  });

  (async () => {
    try {
      const project = await request(`/projects/${projectId}`);
      const name = params.get("branch") || project.default_branch;
      branch.value = name;
      title.textContent = `Coverage of ${name} · ${project.name}`;
      document.title = `${title.textContent} · Comet`;
      const page = await request(`/projects/${projectId}/coverage?ref=${encodeURIComponent(name)}&limit=${LIMIT}`);
      const points = page.data;
      if (!points.length) {
        status.textContent = `No run of ${name} measured coverage yet.`;
        return;
      }
      const oldestFirst = [...points].reverse();
      const latest = points[0];
      status.textContent = `${points.length} ${points.length === 1 ? "run" : "runs"} of ${branchOf(latest.ref)}; latest #${latest.run_number}: line coverage ${pct(latest.line_rate)}.`;
      chart.replaceChildren(
        lineChart({
          id: "coverage-chart",
          label: `Line coverage of ${name} per run, oldest to newest (the table below has the numbers)`,
          yMax: 100,
          format: (v) => `${Math.round(v)}%`,
          points: oldestFirst.map((p) => ({
            label: `#${p.run_number}`,
            value: p.line_rate,
            title: `Run #${p.run_number}: line coverage ${pct(p.line_rate)}, branch coverage ${pct(p.branch_rate)}`,
            dataset: { run: p.run_id, value: p.line_rate ?? "" },
          })),
        }),
        h("figcaption", { class: "muted" }, `Line coverage of ${name}, oldest run on the left`),
      );
      table.replaceChildren(trendTable(points));
    } catch (exc) {
      status.textContent = exc.message;
      status.className = "error";
    }
  })();

  const node = h("section", {},
    h("p", { class: "breadcrumbs" }, h("a", { href: "#/projects" }, "Projects"), " / ",
      h("a", { href: `#/projects/${projectId}` }, "Project runs")),
    title, form, status, chart, table);
  return { node };
}
