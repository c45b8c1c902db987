// A project's insights (`#/projects/ID/insights?window=7d&environment=NAME`): the DORA and
// pipeline figures of GET /projects/{id}/insights, and each stage's p50/p95 duration as an SVG
// bar chart with a table of the same numbers. The figures are what `comet analytics` wrote: they
// lag the live system a little (docs/decisions/0025).
import { request } from "../api.js";
import { h } from "../dom.js";
import { barChart } from "../charts.js";
import { count, fraction, secs } from "../figures.js";

export const WINDOWS = ["1d", "7d", "30d"];

function figure(id, term, value, text) {
  return [h("dt", {}, term), h("dd", { id, dataset: { value: value === null || value === undefined ? "" : String(value) } }, text)];
}

function figures(data) {
  const d = data.dora, p = data.pipeline;
  return [
    h("div", { class: "figures" },
      h("h2", {}, "Delivery (DORA)"),
      h("dl", { id: "dora" },
        figure("dora-deployments", "Successful deployments", d.deployments, count(d.deployments)),
        figure("dora-frequency", "Deployments per day", d.deployment_frequency_per_day,
          Number(d.deployment_frequency_per_day.toFixed(2)).toString()),
        figure("dora-lead-time", "Lead time (median)", d.lead_time_p50_s, secs(d.lead_time_p50_s)),
        figure("dora-failure-rate", "Change failure rate", d.change_failure_rate, fraction(d.change_failure_rate)),
        figure("dora-restore", "Time to restore (median)", d.time_to_restore_p50_s, secs(d.time_to_restore_p50_s)))),
    h("div", { class: "figures" },
      h("h2", {}, "Pipeline"),
      h("dl", { id: "pipeline" },
        figure("pipeline-runs", "Finished runs", p.runs, count(p.runs)),
        figure("pipeline-success", "Success rate", p.success_rate, fraction(p.success_rate)),
        figure("pipeline-flaky", "Flaky test results", p.flaky_rate, fraction(p.flaky_rate)))),
  ];
}

function stagesTable(stages) {
  return h("table", { id: "stage-table" },
    h("caption", { class: "muted" }, "Stage durations and queue waits"),
    h("thead", {}, h("tr", {}, ["Stage", "Duration p50", "Duration p95", "Queue wait p50", "Queue wait p95"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, stages.map((s) => h("tr", { dataset: { stage: s.stage } },
      h("th", { scope: "row" }, s.stage),
      h("td", { dataset: { value: s.duration_p50_s ?? "" } }, secs(s.duration_p50_s)),
      h("td", { dataset: { value: s.duration_p95_s ?? "" } }, secs(s.duration_p95_s)),
      h("td", {}, secs(s.queue_wait_p50_s)),
      h("td", {}, secs(s.queue_wait_p95_s))))));
}

export function insightsPage(projectId, params) {
  const span = WINDOWS.includes(params.get("window")) ? params.get("window") : "7d";
  const environment = params.get("environment") || "";
  const title = h("h1", {}, "Insights");
  const status = h("p", { class: "muted", "aria-live": "polite" }, "Loading insights…");
  const body = h("div", { id: "insights" });
  const windowSelect = h("select", { id: "insights-window", name: "window" },
    WINDOWS.map((w) => h("option", { value: w, selected: w === span }, `last ${w}`)));
  const envSelect = h("select", { id: "insights-environment", name: "environment" },
    h("option", { value: "" }, "all environments"),
    environment ? h("option", { value: environment, selected: true }, environment) : null);
  const go = () => {
    const q = new URLSearchParams({ window: windowSelect.value });
    if (envSelect.value) q.set("environment", envSelect.value);
    location.hash = `#/projects/${projectId}/insights?${q}`;
  };
  windowSelect.addEventListener("change", go);
  envSelect.addEventListener("change", go);

  (async () => {
    try {
      const q = new URLSearchParams({ window: span });
      if (environment) q.set("environment", environment);
      const [project, envs, data] = await Promise.all([
        request(`/projects/${projectId}`),
        request(`/projects/${projectId}/environments`),
        request(`/projects/${projectId}/insights?${q}`),
      ]);
      title.textContent = `Insights · ${project.name}`;
      document.title = `${title.textContent} · Comet`;
      for (const env of envs.data) {
        if (env.name !== environment) envSelect.append(h("option", { value: env.name }, env.name));
      }
      status.textContent = `Over the last ${data.window}${data.environment ? `, deployments to ${data.environment}` : ""}. `
        + "Figures come from comet analytics and lag live runs by a few seconds.";
      const stages = data.pipeline.stages;
      const chart = stages.length
        ? h("figure", { class: "chart-box" },
          barChart({
            id: "stage-chart",
            label: "Stage durations, median and 95th percentile (the table below has the numbers)",
            series: ["p50", "p95"],
            format: secs,
            rows: stages.map((s) => ({ label: s.stage, values: [s.duration_p50_s, s.duration_p95_s] })),
          }),
          h("figcaption", { class: "legend" },
            h("span", { class: "swatch bar-0" }), " p50 (median) ", h("span", { class: "swatch bar-1" }), " p95"))
        : h("p", { class: "muted" }, "No stage finished in this window.");
      body.replaceChildren(...figures(data), h("h2", {}, "Stage durations"), chart, stages.length ? stagesTable(stages) : "");
    } catch (exc) {
      status.textContent = exc.message;
      status.className = "error";
    }
  })();

  const node = h("section", {},
    h("p", { class: "breadcrumbs" }, h("a", { href: "#/projects" }, "Projects"), " / ",
      h("a", { href: `#/projects/${projectId}` }, "Project runs")),
    title,
    h("form", { class: "toolbar", "aria-label": "Insights window and environment", onsubmit: (e) => e.preventDefault() },
      h("div", {}, h("label", { for: "insights-window" }, "Window"), windowSelect),
      h("div", {}, h("label", { for: "insights-environment" }, "Environment"), envSelect)),
    status, body);
  return { node };
}
