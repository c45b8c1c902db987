// Small SVG charts built with DOM APIs (no chart library, no style attributes: the CSP forbids
// them; colours come from classes in app.css). Each chart is an image with a label; the pages put
// a table of the same numbers next to it, which is what assistive technology reads.
const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const round = (n) => Math.round(n * 10) / 10;

// Evenly spaced ticks from 0 to `max` (inclusive), `count` intervals.
export function ticks(max, count = 4) {
  return Array.from({ length: count + 1 }, (_, i) => (max * i) / count);
}

// A value axis: a "nice" top at or above `max` (1, 2, 2.5, 5 × 10^n) and a tick count that
// keeps the steps round (0.25, 0.5, 1, 2 × 10^n).
export function niceScale(max) {
  if (!(max > 0)) return { top: 1, count: 4 };
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= max) return { top: step * power, count: step === 1 || step === 2 ? 4 : 5 };
  }
  return { top: 10 * power, count: 5 };
}

// A line chart of `points` ([{label, value, title, dataset}], in x order) on a 0..yMax scale;
// a point whose value is null is left out of the line and gets no dot.
export function lineChart({ points, label, yMax = 100, format = String, id }) {
  const W = 640, H = 240, left = 48, right = 16, top = 14, bottom = 34;
  const plotW = W - left - right, plotH = H - top - bottom;
  const x = (i) => round(points.length > 1 ? left + (i * plotW) / (points.length - 1) : left + plotW / 2);
  const y = (v) => round(top + plotH - (Math.min(v, yMax) / yMax) * plotH);
  const grid = ticks(yMax).map((t) => svg("g", { class: "tick" },
    svg("line", { class: "grid", x1: left, x2: W - right, y1: y(t), y2: y(t) }),
    svg("text", { x: left - 6, y: y(t) + 4, "text-anchor": "end" }, format(t))));
  const every = Math.max(1, Math.ceil(points.length / 12));
  const xLabels = points.map((p, i) => (i % every === 0 || i === points.length - 1)
    ? svg("text", { x: x(i), y: H - bottom + 18, "text-anchor": "middle" }, p.label) : null);
  const measured = points.map((p, i) => [p, i]).filter(([p]) => p.value !== null && p.value !== undefined);
  const line = svg("polyline", { class: "line", points: measured.map(([p, i]) => `${x(i)},${y(p.value)}`).join(" ") });
  const dots = measured.map(([p, i]) => svg("circle", { class: "point", cx: x(i), cy: y(p.value), r: 4, dataset: p.dataset ?? {} },
    svg("title", {}, p.title ?? `${p.label}: ${format(p.value)}`)));
  return svg("svg", { class: "chart line-chart", id, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label },
    grid, svg("line", { class: "axis", x1: left, x2: W - right, y1: y(0), y2: y(0) }), xLabels, line, dots);
}

// Horizontal grouped bars: one group per row ([{label, values: [..]}]), one bar per series
// (classes bar-0, bar-1, …); a null value draws no bar and reads "n/a".
export function barChart({ rows, series, label, format = String, id }) {
  const W = 640, left = 170, right = 70, top = 8, bar = 14, gap = 3, groupGap = 12, axis = 22;
  const groupH = series.length * (bar + gap) - gap;
  const H = top + rows.length * (groupH + groupGap) + axis;
  const { top: max, count } = niceScale(Math.max(0, ...rows.flatMap((r) => r.values.filter((v) => v !== null && v !== undefined))));
  const plotW = W - left - right;
  const w = (v) => round((Math.min(v, max) / max) * plotW);
  const bottom = H - axis;
  const grid = ticks(max, count).map((t) => svg("g", { class: "tick" },
    svg("line", { class: "grid", x1: left + w(t), x2: left + w(t), y1: top, y2: bottom }),
    svg("text", { x: left + w(t), y: bottom + 15, "text-anchor": "middle" }, format(t))));
  const groups = rows.map((row, r) => {
    const y0 = top + r * (groupH + groupGap);
    const name = row.label.length > 24 ? `${row.label.slice(0, 23)}…` : row.label;
    return svg("g", { class: "bar-group", dataset: { row: row.label } },
      svg("text", { class: "bar-label", x: left - 8, y: y0 + groupH / 2 + 4, "text-anchor": "end" }, name,
        svg("title", {}, row.label)),
      row.values.map((v, s) => {
        const yb = y0 + s * (bar + gap);
        const known = v !== null && v !== undefined;
        return svg("g", {},
          known ? svg("rect", { class: `bar bar-${s}`, x: left, y: yb, width: Math.max(w(v), 1), height: bar,
            dataset: { series: series[s], value: v } }, svg("title", {}, `${row.label} ${series[s]}: ${format(v)}`)) : null,
          svg("text", { class: "bar-value", x: left + (known ? Math.max(w(v), 1) : 0) + 4, y: yb + bar - 3 },
            `${series[s]} ${known ? format(v) : "n/a"}`));
      }));
  });
  return svg("svg", { class: "chart bar-chart", id, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label },
    grid, groups, svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: bottom }));
}
