// "Rendered" marks for tests and the bench: once a page has put in the DOM what it waits for, the
// frame after it is painted sets `data-ready` on an element and a User Timing mark
// (`performance.mark(name)`, read with performance.getEntriesByName) — a time since navigation start.
const marked = new WeakSet();

export function markRendered(el, value, name) {
  if (marked.has(el)) return;
  marked.add(el);
  requestAnimationFrame(() => setTimeout(() => {
    el.dataset.ready = String(value);
    performance.mark(name);
  }));
}
