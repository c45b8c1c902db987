// The worker fleet and its queues (GET /workers and GET /queues; any signed-in user may read them):
// each worker's pool, labels, busy slots, status and heartbeat age; each pool's waiting and running
// stages, its oldest wait, Kafka lag, and why a waiting stage cannot be scheduled. Asked again every
// two seconds while the page is open.
import { request } from "../api.js";
import { duration, h, when } from "../dom.js";

const POLL_MS = 2000;

function labels(map) {
  const pairs = Object.entries(map ?? {});
  return pairs.length ? pairs.map(([k, v]) => h("code", { class: "label" }, `${k}=${v}`)) : "—";
}

function workerRow(w) {
  return h("tr", { "data-worker": w.id, "data-status": w.status, "data-pool": w.pool },
    h("td", {}, h("code", {}, w.id), h("div", { class: "muted" }, `${w.hostname} pid ${w.pid}`)),
    h("td", {}, w.pool),
    h("td", {}, labels(w.labels)),
    h("td", { class: "busy" }, `${w.busy}/${w.slots}`),
    h("td", {}, h("span", { class: "status", "data-status": w.status }, w.status)),
    h("td", { class: "heartbeat" }, `${w.seconds_since_heartbeat.toFixed(1)} s ago`),
    h("td", {}, when(w.started_at)));
}

function queueRow(q) {
  return h("tr", { "data-pool": q.pool, "data-unschedulable": q.unschedulable ? "true" : "false" },
    h("td", {}, q.pool),
    h("td", {}, String(q.depth)),
    h("td", {}, String(q.running)),
    h("td", {}, `${q.busy}/${q.slots} on ${q.workers} worker${q.workers === 1 ? "" : "s"}`),
    h("td", {}, q.oldest_waiting_stage ? `${q.oldest_waiting_stage} (${duration(q.oldest_wait_s)})` : "—"),
    h("td", {}, q.kafka_lag === null ? "—" : String(q.kafka_lag)),
    h("td", { class: q.unschedulable ? "error reason" : "reason" },
      q.unschedulable ? `${q.unschedulable_stages} unschedulable: ` : "", q.reason ?? ""));
}

function table(id, heads, body) {
  return h("table", { id }, h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))), body);
}

export function workersPage() {
  const workers = h("tbody", {});
  const queues = h("tbody", {});
  const status = h("p", { class: "muted", "aria-live": "polite" }, "Loading…");
  let timer = null;
  let stopped = false;

  async function refresh() {
    try {
      const [w, q] = await Promise.all([request("/workers"), request("/queues")]);
      if (stopped) return;
      workers.replaceChildren(...w.data.map(workerRow));
      queues.replaceChildren(...q.data.map(queueRow));
      status.textContent = w.data.length ? "" : "No workers have registered.";
    } catch (exc) {
      status.textContent = exc.message;
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }

  refresh();
  const node = h("section", {},
    h("h1", {}, "Workers and queues"), status,
    h("h2", {}, "Workers"),
    table("workers", ["Worker", "Pool", "Labels", "Busy", "Status", "Heartbeat", "Started"], workers),
    h("h2", {}, "Queues"),
    table("queues", ["Pool", "Waiting", "Running", "Slots busy", "Oldest waiting", "Kafka lag", "Why waiting"], queues));
  return { node, leave: () => { stopped = true; clearTimeout(timer); } };
}
