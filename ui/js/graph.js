// A run's stages as a graph: one column per depth of `needs` (a stage sits one column right of
// its deepest need), legs of one matrix or `parallel` stage grouped in one box, and the edges
// drawn as SVG paths under the boxes once the browser has laid them out.
import { duration, elapsed, h, statusBadge } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

// `unit[python=3.11]` is a leg of `unit`; a plain name is its own group.
export function groupOf(name) {
  const open = name.indexOf("[");
  return open > 0 && name.endsWith("]") ? name.slice(0, open) : name;
}

export function depths(stages) {
  const byName = new Map(stages.map((s) => [s.name, s]));
  const depth = new Map();
  const visit = (name, seen) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0; // a cycle cannot be planned; never loop on one
    seen.add(name);
    const stage = byName.get(name);
    const needs = (stage?.needs ?? []).filter((n) => byName.has(n));
    const d = needs.length ? 1 + Math.max(...needs.map((n) => visit(n, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  for (const s of stages) visit(s.name, new Set());
  return depth;
}

export function shape(stages) {
  return stages.map((s) => `${s.name}<${s.needs.join(",")}`).join("|");
}

function stageMeta(stage) {
  const parts = [];
  const took = duration(elapsed(stage.started_at, stage.finished_at));
  if (took) parts.push(took);
  if (stage.attempt > 1) parts.push(`attempt ${stage.attempt}`);
  if (stage.exit_code !== null && stage.exit_code !== undefined && stage.exit_code !== 0) parts.push(`exit ${stage.exit_code}`);
  return parts.join(" · ");
}

export class StageGraph {
  constructor(runId) {
    this.runId = runId;
    this.root = h("div", { class: "graph", role: "list", "aria-label": "Stages by dependency depth" });
    this.nodes = new Map();
    this.groups = new Map();
    this.current = null;
    this.stages = [];
    this.onResize = () => this.drawEdges();
    window.addEventListener("resize", this.onResize);
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
  }

  update(stages) {
    this.stages = stages;
    const key = shape(stages);
    if (key !== this.current) {
      this.current = key;
      this.build(stages);
    }
    for (const stage of stages) this.refresh(stage);
  }

  // Durations of running stages grow without a new answer from the API.
  tick() {
    for (const stage of this.stages) if (stage.started_at && !stage.finished_at) this.refresh(stage);
  }

  build(stages) {
    this.root.replaceChildren();
    this.nodes.clear();
    this.groups.clear();
    const depth = depths(stages);
    const columns = [];
    const groupBoxes = new Map();
    for (const stage of stages) {
      const d = depth.get(stage.name);
      while (columns.length <= d) {
        columns.push(h("div", { class: "column", role: "listitem", "aria-label": `Depth ${columns.length + 1}` }));
      }
      const link = h(
        "a",
        {
          class: "stage",
          href: `#/runs/${this.runId}/stages/${encodeURIComponent(stage.name)}`,
          "data-stage": stage.name,
        },
        h("span", { class: "name" }, stage.name),
        statusBadge(stage.status),
        " ",
        h("span", { class: "meta" }),
      );
      this.nodes.set(stage.name, link);
      const group = groupOf(stage.name);
      const legs = stages.filter((s) => groupOf(s.name) === group).length;
      if (legs > 1) {
        let box = groupBoxes.get(group);
        if (!box) {
          box = h("section", { class: "group", "data-group": group, "aria-label": `${group} (${legs} legs)` },
            h("h3", {}, `${group} · ${legs} legs`));
          groupBoxes.set(group, box);
          columns[d].append(box);
        }
        box.append(link);
        this.groups.set(stage.name, box);
      } else {
        columns[d].append(link);
      }
    }
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("class", "edges");
    this.svg.setAttribute("aria-hidden", "true");
    this.root.append(this.svg, ...columns);
    requestAnimationFrame(() => this.drawEdges());
  }

  refresh(stage) {
    const node = this.nodes.get(stage.name);
    if (!node) return;
    node.dataset.status = stage.status;
    node.dataset.attempt = String(stage.attempt);
    const badge = node.querySelector(".status");
    badge.dataset.status = stage.status;
    badge.textContent = stage.status.replace("_", " ");
    node.querySelector(".meta").textContent = stageMeta(stage);
    node.setAttribute("aria-label", `${stage.name}: ${stage.status}${stageMeta(stage) ? `, ${stageMeta(stage)}` : ""}`);
  }

  // An edge per need, drawn between group boxes when either end is a leg (one edge, not N×M).
  drawEdges() {
    if (!this.svg || !this.root.isConnected) return;
    const origin = this.root.getBoundingClientRect();
    const seen = new Set();
    const paths = [];
    for (const stage of this.stages) {
      for (const need of stage.needs) {
        const from = this.groups.get(need) ?? this.nodes.get(need);
        const to = this.groups.get(stage.name) ?? this.nodes.get(stage.name);
        if (!from || !to || from === to) continue;
        const boxKey = `${from.dataset.group ?? from.dataset.stage}>${to.dataset.group ?? to.dataset.stage}`;
        if (seen.has(boxKey)) continue;
        seen.add(boxKey);
        const a = from.getBoundingClientRect();
        const b = to.getBoundingClientRect();
        const x1 = a.right - origin.left + this.root.scrollLeft;
        const y1 = a.top + a.height / 2 - origin.top;
        const x2 = b.left - origin.left + this.root.scrollLeft;
        const y2 = b.top + b.height / 2 - origin.top;
        const mid = (x1 + x2) / 2;
        const path = document.createElementNS(SVG, "path");
        path.setAttribute("d", `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`);
        path.setAttribute("data-edge", boxKey);
        paths.push(path);
      }
    }
    this.svg.replaceChildren(...paths);
  }
}
