// Building DOM nodes without innerHTML: every value from the API lands as text, never as markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function statusBadge(status) {
  return h("span", { class: "status", "data-status": status }, status.replace("_", " "));
}

// "1m 05s" from seconds; "" when unknown.
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

// Seconds between two ISO timestamps; a missing end means "until now" (still going).
export function elapsed(start, end) {
  if (!start) return null;
  const until = end ? Date.parse(end) : Date.now();
  return (until - Date.parse(start)) / 1000;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

export const TERMINAL_RUN = new Set(["succeeded", "failed", "cancelled"]);
export const TERMINAL_STAGE = new Set(["succeeded", "failed", "cancelled", "skipped"]);
