// System: what this Warren is and how its housekeeping goes — version,
// configuration (secrets redacted), meta-store migrations, background
// jobs with their last runs, disk usage, and the ClickHouse cluster when
// one is configured.
import { h, clear, notice, number, bytes, time, seconds, millis } from "./dom.js";

function table(testid, headings, rows) {
  return h("table", { class: "data", "data-testid": testid },
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

function jobs(list) {
  if (list.length === 0) return h("p", { class: "muted", "data-testid": "jobs-none" }, "No background job has run since this process started.");
  return table("jobs", ["Job", "Last run", "Took", "Outcome", "What it did", "Runs", "Failures"], list.map((job) => [
    job.job, time(new Date(job.last.started_ms).toISOString()), millis(job.last.duration_ms),
    h("span", { class: job.last.outcome === "ok" ? "ok" : "bad" }, job.last.outcome === "ok" ? "ok" : `failed: ${job.last.message}`),
    job.last.detail || "", number(job.runs), number(job.failures),
  ]));
}

function disk(usage) {
  const rows = Object.entries(usage.parts || {}).map(([name, size]) => [name, bytes(size)]);
  rows.push([h("strong", {}, "data dir"), h("strong", {}, bytes(usage.data_dir_bytes))]);
  if (usage.filesystem) {
    rows.push(["file system free", `${bytes(usage.filesystem.free_bytes)} of ${bytes(usage.filesystem.total_bytes)}`]);
  }
  return table("disk", ["Part", "Size"], rows);
}

function macro(host, name) {
  const found = (host.macros || []).find((m) => m.macro === name);
  return found ? found.substitution : "?";
}

function yes(flag, bad) {
  return h("span", { class: flag ? (bad ? "bad" : "ok") : (bad ? "ok" : "") }, flag ? "yes" : "no");
}

// One card for the cluster: every server with its replicas' health, then
// unfinished mutations, running merges and parts per partition.
function cluster(info) {
  const hosts = info.hosts;
  const replicas = [];
  const mutations = [];
  const merges = [];
  const parts = [];
  for (const host of hosts) {
    const where = `${macro(host, "shard")}/${macro(host, "replica")}`;
    for (const r of host.replicas || []) {
      replicas.push([where, r.table, yes(r.is_readonly, true), yes(r.is_session_expired, true), number(r.queue_size),
        seconds(r.absolute_delay), `${r.active_replicas} of ${r.total_replicas}`]);
    }
    for (const m of host.mutations || []) {
      if (!m.is_done) mutations.push([where, m.table, m.mutation_id, m.command, m.created, number(m.parts_to_do)]);
    }
    for (const m of host.merges || []) {
      merges.push([where, m.table, seconds(Math.round(m.elapsed)), `${Math.round(m.progress * 100)}%`, number(m.num_parts)]);
    }
    for (const p of host.parts || []) parts.push([where, p.table, p.partition, number(p.parts), number(p.rows), bytes(p.bytes)]);
  }
  const servers = table("clickhouse-hosts", ["Server", "Shard", "Replica", "Answers", "Data on disk", "Active parts"],
    hosts.map((host) => [h("span", { class: "mono" }, host.url), macro(host, "shard"), macro(host, "replica"),
      host.reachable ? h("span", { class: "ok" }, "yes") : h("span", { class: "bad" }, `no: ${host.error}`),
      host.disk && host.disk[0] ? bytes(host.disk[0].bytes) : "–",
      host.disk && host.disk[0] ? number(host.disk[0].active_parts) : "–"]));
  const or = (rows, none) => rows.length ? rows : [[h("span", { class: "muted" }, none)]];
  const behind = (info) => {
    if (info.records_behind === null) return h("span", { class: "bad" }, `Lag unknown: ${info.records_behind_error}`);
    if (info.records_behind === 0) return h("span", { class: "ok" }, "In step with ingest: it holds every event ingest stored.");
    return h("span", { class: "bad" },
      `Behind ingest by ${number(info.records_behind)} log records; it catches up by itself (see the replica.catch_up job).`);
  };
  return h("section", { class: "card", "data-testid": "clickhouse" },
    h("h3", {}, `ClickHouse: ${info.database} on cluster ${info.cluster}`),
    h("p", { "data-testid": "clickhouse-behind" }, behind(info)), servers,
    h("h4", {}, "Replicas"),
    table("clickhouse-replicas", ["Server", "Table", "Read-only", "Session expired", "Queue", "Delay", "Active"],
      or(replicas, "No replicated tables answer.")),
    h("h4", {}, "Mutations not done"),
    table("clickhouse-mutations", ["Server", "Table", "Mutation", "Command", "Created", "Parts to do"], or(mutations, "None.")),
    h("h4", {}, "Merges running"),
    table("clickhouse-merges", ["Server", "Table", "Elapsed", "Progress", "Parts"], or(merges, "None.")),
    h("h4", {}, "Parts per partition"),
    table("clickhouse-parts", ["Server", "Table", "Partition", "Parts", "Rows", "Bytes"], or(parts, "No data yet.")));
}

export async function render(main, context) {
  main.append(h("h1", {}, "System"));
  const body = h("div");
  main.append(body);
  let info;
  try {
    info = await context.api("/api/instance/system/");
  } catch (error) {
    body.append(notice(error.status === 403 || error.status === 404
      ? "The System page is for the admins of the deployment's first organization."
      : error.message, "error"));
    return;
  }
  clear(body).append(
    h("section", { class: "card" }, h("h3", {}, "This Warren"),
      table("about", ["", ""], [
        ["Version", h("span", { "data-testid": "version" }, info.version)],
        ["Roles", info.role],
        ["Started", `${time(info.started_at)} (up ${seconds(info.uptime_seconds)})`],
        ["Data dir", h("span", { class: "mono" }, info.data_dir)],
        ["Event store", h("span", { class: "mono" }, info.event_store.url)],
        ["Events table", `${number(info.event_store.files)} files, ${bytes(info.event_store.bytes)}`],
        ["Event log", `${bytes(info.event_log.bytes)} in ${info.event_log.partitions.filter((p) => p.group === "ingest").length || "–"} partitions`],
        ["Internal project", info.internal_project ? String(info.internal_project) : "self-monitoring is off"],
      ])),
    h("div", { class: "grid-2" },
      h("section", { class: "card" }, h("h3", {}, "Meta-store migrations"),
        table("migrations", ["Version", "Migration", "State", "Applied", "Took"], info.migrations.map((m) => [
          String(m.version), m.description, h("span", { class: m.state === "applied" ? "ok" : "bad" }, m.state),
          m.applied_at || "–", m.execution_ms === null ? "–" : millis(m.execution_ms),
        ]))),
      h("section", { class: "card" }, h("h3", {}, "Disk"), disk(info.disk))),
    h("section", { class: "card" }, h("h3", {}, "Background jobs"), jobs(info.jobs)),
    info.clickhouse ? cluster(info.clickhouse) : "",
    h("section", { class: "card" }, h("h3", {}, "Configuration"),
      h("p", { class: "muted" }, "As loaded from defaults, warren.toml, WARREN_* variables and flags; secrets are hidden."),
      h("pre", { class: "config", "data-testid": "config" }, JSON.stringify(info.config, null, 2))));
}
