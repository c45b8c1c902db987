// A log as numbered lines, each with a link of its own (`…/stages/NAME?line=N`), searchable.
// One click listener for the whole log (event delegation), not one per line; the numbers' links
// are out of the tab order (a 50,000-line log would be 50,000 tab stops): the page's "Go to line"
// field is the keyboard's way to a line.
import { h } from "./dom.js";

export class LogLines {
  constructor(pre, hrefFor, onPick) {
    this.pre = pre;
    this.hrefFor = hrefFor;
    this.count = 0;
    this.line = null; // made when its first text comes: a log ending in "\n" has no empty last line
    // New lines gather in a fragment, put in the page once per chunk (`flush`); each line is a
    // clone of one template (cheaper than building its two elements attribute by attribute).
    this.batch = document.createDocumentFragment();
    this.template = h("span", { class: "line" }, h("a", { class: "ln", tabindex: "-1" }));
    pre.addEventListener("click", (event) => {
      const link = event.target.closest?.("a.ln");
      if (!link) return;
      event.preventDefault(); // the page stays; only the address names the line
      onPick(Number(link.parentElement.dataset.n));
    });
  }

  append(node) {
    if (this.line === null) {
      this.count += 1;
      const n = String(this.count);
      const line = this.template.cloneNode(true);
      line.dataset.n = n;
      const link = line.firstChild;
      link.href = this.hrefFor(this.count);
      link.textContent = n;
      this.line = line;
      this.batch.append(line);
    }
    this.line.append(node);
  }

  newline() {
    if (this.line === null) this.append(document.createTextNode("")); // an empty line is a line
    this.line.append("\n");
    this.line = null;
  }

  flush() {
    if (this.batch.firstChild) this.pre.append(this.batch);
  }

  marker(text) {
    // An attempt's separator: a line of its own, not numbered.
    if (this.line !== null) this.newline();
    this.batch.append(h("span", { class: "marker" }, text));
    this.flush();
  }

  get(n) {
    return this.pre.querySelector(`.line[data-n="${Number(n)}"]`);
  }

  lines() {
    return this.pre.querySelectorAll(".line");
  }
}

// The text of a line without its number.
function textOf(line) {
  return line.textContent.slice(line.firstChild.textContent.length);
}

// Which lines hold `query` (case-insensitive), marked with the class `match`; returns them.
export function search(logLines, query) {
  const needle = query.trim().toLowerCase();
  const found = [];
  for (const line of logLines.lines()) {
    const hit = needle !== "" && textOf(line).toLowerCase().includes(needle);
    line.classList.toggle("match", hit);
    if (hit) found.push(line);
  }
  return found;
}
