// How the results pages spell numbers: percentages, short durations, missing figures.
import { duration } from "./dom.js";

export const NA = "n/a";

const known = (v) => v !== null && v !== undefined && !Number.isNaN(v);

// A value already in percent (the coverage API's 0..100, 2 decimals): "62.5%".
export function pct(value) {
  return known(value) ? `${Number(value.toFixed(2))}%` : NA;
}

// A fraction (the insights API's 0..1): "62.5%".
export function fraction(value) {
  return known(value) ? `${Number((value * 100).toFixed(1))}%` : NA;
}

// Seconds, readable at both ends: "0.42 s", "12.3 s", "1m 05s".
export function secs(value) {
  if (!known(value)) return NA;
  if (value < 10) return `${Number(value.toFixed(2))} s`;
  if (value < 60) return `${Number(value.toFixed(1))} s`;
  return duration(value);
}

export function count(value) {
  return known(value) ? String(value) : NA;
}

// `refs/heads/main` → `main`.
export function branchOf(ref) {
  return (ref ?? "").replace(/^refs\/heads\//, "");
}
