// Overview: Warren's health, live. The deployment's figures come from
// /api/instance/health (a sample every couple of seconds, with a short
// history); the project's persons and ingestion warnings from its API.
import { h, clear, notice, number, short, millis, seconds, bytes, time } from "./dom.js";
import { seriesChart, sparkline } from "./charts.js";

const TILES = [
  { id: "events-per-second", label: "Events / s", value: (p) => p.events_per_second, show: short },
  { id: "events-received", label: "Events received", value: (p) => p.events_received_total, show: number, hint: "since start" },
  { id: "stored-per-second", label: "Stored / s", value: (p) => p.stored_per_second, show: short },
  { id: "requests-ok", label: "2xx / s", value: (p) => p.requests_per_second.ok, show: short },
  { id: "requests-4xx", label: "4xx / s", value: (p) => p.requests_per_second.client_error, show: short },
  { id: "requests-5xx", label: "5xx / s", value: (p) => p.requests_per_second.server_error, show: short },
  { id: "capture-p99", label: "Capture p99", value: (p) => p.capture_p99_ms, show: millis },
  { id: "ingest-lag", label: "Ingest lag", value: (p) => p.ingest_lag_records, show: number, hint: "records" },
  { id: "freshness", label: "Freshness", value: (p) => p.freshness_seconds, show: seconds, hint: "captured → queryable" },
  { id: "store-size", label: "Event store", value: (p) => p.store_bytes, show: bytes, hint: (p) => `${number(p.store_files)} files` },
];

function clock(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function tiles(points) {
  const latest = points[points.length - 1];
  return h("section", { class: "tiles" }, TILES.map((tile) => {
    const value = latest ? tile.value(latest) : null;
    const hint = typeof tile.hint === "function" ? (latest ? tile.hint(latest) : "") : tile.hint;
    return h("div", { class: "tile" },
      h("div", { class: "tile-label" }, tile.label),
      h("div", { class: "tile-value", "data-testid": `tile-${tile.id}`, "data-value": value ?? "" }, tile.show(value)),
      hint ? h("div", { class: "tile-hint" }, hint) : null,
      sparkline(points.slice(-60).map(tile.value)));
  }));
}

function charts(points) {
  const labels = points.map((p) => clock(p.at_ms));
  const line = (title, series, format, testid) => h("section", { class: "card" }, h("h3", {}, title),
    seriesChart({ series, labels, kind: "line", format, height: 200, testid }));
  return h("div", { class: "grid-2" },
    line("Events per second", [
      { label: "received", data: points.map((p) => p.events_per_second) },
      { label: "stored", data: points.map((p) => p.stored_per_second) },
    ], short, "chart-events"),
    line("Requests per second by status", [
      { label: "2xx/3xx", data: points.map((p) => p.requests_per_second.ok) },
      { label: "4xx", data: points.map((p) => p.requests_per_second.client_error) },
      { label: "5xx", data: points.map((p) => p.requests_per_second.server_error) },
    ], short, "chart-requests"),
    line("Capture p99 latency (ms)", [{ label: "p99", data: points.map((p) => p.capture_p99_ms) }], short, "chart-latency"),
    line("Ingest lag (records) and freshness (s)", [
      { label: "lag", data: points.map((p) => p.ingest_lag_records) },
      { label: "freshness", data: points.map((p) => p.freshness_seconds) },
    ], short, "chart-lag"));
}

function partitions(lags) {
  if (!lags.length) return null;
  return h("section", { class: "card" }, h("h3", {}, "Log lag per partition and consumer group"),
    h("table", { class: "data", "data-testid": "partition-lag" },
      h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Partition"), h("th", {}, "Lag (records)"))),
      h("tbody", {}, lags.map((lag) => h("tr", {}, h("td", {}, lag.group), h("td", {}, lag.partition),
        h("td", { class: "num" }, number(lag.lag_records)))))));
}

async function projectSection(context) {
  const id = context.project.id;
  const [persons, warnings] = await Promise.all([
    context.api(`/api/projects/${id}/persons/?limit=1`),
    context.api(`/api/projects/${id}/ingestion_warnings/?limit=10`),
  ]);
  return h("section", { class: "card" },
    h("h3", {}, `Project: ${context.project.name}`),
    h("div", { class: "tiles" }, h("div", { class: "tile" }, h("div", { class: "tile-label" }, "Persons"),
      h("div", { class: "tile-value", "data-testid": "tile-persons", "data-value": persons.count }, number(persons.count)))),
    h("h4", {}, "Ingestion warnings"),
    warnings.results.length === 0
      ? h("p", { class: "muted", "data-testid": "warnings-none" }, "None: every event was taken as sent.")
      : h("table", { class: "data", "data-testid": "ingestion-warnings" },
        h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Kind"), h("th", {}, "Details"))),
        h("tbody", {}, warnings.results.map((w) => h("tr", {}, h("td", {}, time(w.timestamp)), h("td", {}, w.type),
          h("td", { class: "mono" }, JSON.stringify(w.details)))))));
}

/** How often the project's part (persons, warnings) is read again. */
const PROJECT_EVERY_MS = 30_000;

export function render(main, context) {
  const health = h("div", { "data-testid": "health" });
  const project = h("div");
  main.append(h("h1", {}, "Overview"), health, project);
  let timer = null;
  let stopped = false;
  let allowed = true;
  // Every read is in the audit log: the project's part is read now and
  // then, the health (which is not audited) at every sample.
  let projectReadAt = 0;

  async function refresh() {
    const projectDue = Date.now() - projectReadAt >= PROJECT_EVERY_MS;
    if (projectDue) projectReadAt = Date.now();
    const [answer] = await Promise.all([
      allowed ? context.api("/api/instance/health/").catch((error) => {
        if (error.status === 403 || error.status === 404) {
          allowed = false;
          return null;
        }
        throw error;
      }) : null,
      projectDue ? projectSection(context).then((section) => clear(project).append(section)) : null,
    ]);
    if (stopped) return;
    clear(health);
    if (!answer) {
      health.append(notice("Warren's own health is shown to the admins of the deployment's first organization."));
      return 10000;
    }
    const points = answer.points;
    const latest = points[points.length - 1];
    health.append(
      h("p", { class: "muted" }, latest ? `Live: a sample every ${answer.sample_interval_ms / 1000} s, last at ${clock(latest.at_ms)}.` : "Waiting for the first sample…"),
      tiles(points), charts(points), partitions(answer.partitions));
    return answer.sample_interval_ms;
  }

  async function loop() {
    let wait = 5000;
    try {
      wait = await refresh();
    } catch (error) {
      clear(health).append(notice(`Could not load the overview: ${error.message}`, "error"));
    }
    if (!stopped) timer = window.setTimeout(loop, Math.max(1000, wait || 2000));
  }
  loop();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
