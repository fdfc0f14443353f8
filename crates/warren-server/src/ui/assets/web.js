// Web analytics: what a site's posthog-js pageviews say over a range —
// visitors, pageviews, sessions, bounce rate and session length, and the
// top pages, referrers, UTM sources and devices. Each figure is one SQL
// query through the query API, so it answers on either event store.
import { h, clear, notice, number, seconds } from "./dom.js";

const RANGES = [
  { days: 1, label: "Last 24 hours" },
  { days: 7, label: "Last 7 days" },
  { days: 30, label: "Last 30 days" },
  { days: 90, label: "Last 90 days" },
];

const BREAKDOWNS = [
  { id: "pages", title: "Top pages", property: "$pathname", label: "Page" },
  { id: "referrers", title: "Referrers", property: "$referring_domain", label: "Domain" },
  { id: "utm-sources", title: "UTM sources", property: "utm_source", label: "Source" },
  { id: "devices", title: "Devices", property: "$device_type", label: "Device" },
];

/** Pageviews since `days` ago, as a SQL condition: in hours, which both
 * engines count alike (a ClickHouse day follows its zone's clock changes). */
function pageviews(days) {
  return `event = '$pageview' AND timestamp >= now() - INTERVAL ${Number(days) * 24} HOUR`;
}

function overviewSql(days) {
  return `SELECT count() AS pageviews, count(DISTINCT person_id) AS visitors FROM events WHERE ${pageviews(days)}`;
}

// A session's pageviews and length from its first pageview to its last;
// a session of one pageview is a bounce.
function sessionsSql(days) {
  return `SELECT count() AS sessions,
      avg(CASE WHEN views = 1 THEN 1.0 ELSE 0.0 END) AS bounce_rate,
      avg(last_seen - first_seen) AS duration
    FROM (SELECT properties.$session_id AS session, count() AS views,
        min(toUnixTimestamp(timestamp)) AS first_seen, max(toUnixTimestamp(timestamp)) AS last_seen
      FROM events WHERE ${pageviews(days)} AND properties.$session_id IS NOT NULL
      GROUP BY session) AS sessions`;
}

function breakdownSql(property, days) {
  return `SELECT properties.${property} AS value, count() AS views, count(DISTINCT person_id) AS visitors
    FROM events WHERE ${pageviews(days)} AND properties.${property} IS NOT NULL
    GROUP BY value ORDER BY views DESC, value LIMIT 10`;
}

function tile(id, label, value, show) {
  return h("div", { class: "tile" },
    h("div", { class: "tile-label" }, label),
    h("div", { class: "tile-value", "data-testid": `web-${id}`, "data-value": value ?? "" }, value === null ? "–" : show(value)));
}

function percent(value) {
  return `${Math.round(value * 100)}%`;
}

function breakdownTable(breakdown, rows) {
  if (!rows.length) return notice(`No pageviews with ${breakdown.property} in this range.`);
  return h("table", { class: "data", "data-testid": `web-${breakdown.id}` },
    h("thead", {}, h("tr", {}, h("th", {}, breakdown.label), h("th", {}, "Views"), h("th", {}, "Visitors"))),
    h("tbody", {}, rows.map(([value, views, visitors]) => h("tr", {},
      h("td", { class: "mono ellipsis" }, String(value)), h("td", {}, number(views)), h("td", {}, number(visitors))))));
}

export function render(main, context) {
  const range = h("select", { name: "range", "aria-label": "Range" },
    RANGES.map((r) => h("option", { value: String(r.days) }, r.label)));
  range.value = "7";
  const tiles = h("section", { class: "tiles" });
  const tables = h("div", { class: "grid-2" });
  main.append(h("h1", {}, "Web analytics"), h("form", { class: "filters" }, range), tiles, tables);
  const sql = (query) => context.query({ kind: "HogQLQuery", query }).then((answer) => answer.results);

  // Counts loads, so the answers of a range since changed are dropped.
  let loads = 0;
  async function load() {
    const days = Number(range.value);
    const load = ++loads;
    clear(tiles).append(h("p", { class: "muted" }, "Loading…"));
    clear(tables);
    try {
      const [[overview], [sessions], ...breakdowns] = await Promise.all([
        sql(overviewSql(days)), sql(sessionsSql(days)),
        ...BREAKDOWNS.map((b) => sql(breakdownSql(b.property, days))),
      ]);
      if (load !== loads) return;
      const [views, visitors] = overview;
      const [count, bounce, duration] = sessions;
      clear(tiles).append(
        tile("visitors", "Visitors", visitors, number),
        tile("pageviews", "Pageviews", views, number),
        tile("sessions", "Sessions", count, number),
        tile("bounce-rate", "Bounce rate", count ? bounce : null, percent),
        tile("session-duration", "Session length", count ? duration : null, seconds));
      BREAKDOWNS.forEach((breakdown, i) => tables.append(
        h("section", { class: "card" }, h("h3", {}, breakdown.title), breakdownTable(breakdown, breakdowns[i]))));
    } catch (error) {
      if (load === loads) clear(tiles).append(notice(error.message, "error"));
    }
  }
  range.addEventListener("change", load);
  load();
}
