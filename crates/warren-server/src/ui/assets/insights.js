// Insights: build trends, funnels, retention, lifecycle and stickiness
// queries with a form, see them as charts, save them, and put them on
// dashboards. The form reads and writes PostHog's query schema, so an
// insight saved here runs unchanged through the query API.
import { h, clear, notice, number, time } from "./dom.js";
import { seriesChart, funnelChart, retentionTable } from "./charts.js";
import { definitions } from "./events.js";

export const KINDS = [
  ["TrendsQuery", "Trends"],
  ["FunnelsQuery", "Funnel"],
  ["RetentionQuery", "Retention"],
  ["LifecycleQuery", "Lifecycle"],
  ["StickinessQuery", "Stickiness"],
];
const MATHS = [["total", "Total count"], ["dau", "Unique users"], ["weekly_active", "Weekly active"],
  ["monthly_active", "Monthly active"], ["unique_session", "Unique sessions"], ["sum", "Sum of property"],
  ["avg", "Average of property"], ["median", "Median of property"], ["p90", "90th percentile of property"],
  ["max", "Maximum of property"]];
const NEEDS_PROPERTY = new Set(["sum", "avg", "median", "p90", "max", "min"]);
const RANGES = [["-24h", "Last 24 hours"], ["-7d", "Last 7 days"], ["-14d", "Last 14 days"], ["-30d", "Last 30 days"],
  ["-90d", "Last 90 days"], ["mStart", "This month"], ["-1y", "Last year"]];
const INTERVALS = ["hour", "day", "week", "month"];

/** The query inside a saved insight's `query` (an InsightVizNode or the query itself). */
export function sourceOf(insight) {
  const query = insight.query || {};
  return query.source || query;
}

/** A saved or built query drawn as its kind's chart. */
export function renderResult(query, answer, testid = "insight-result") {
  const results = answer.results;
  const box = h("div", { class: "result", "data-testid": testid, "data-kind": query.kind });
  if (!results || (Array.isArray(results) && results.length === 0)) {
    box.append(notice("No data in this range."));
    return box;
  }
  switch (query.kind) {
    case "FunnelsQuery": {
      const steps = Array.isArray(results[0]) ? results[0] : results;
      box.append(funnelChart(steps, "funnel-chart"));
      break;
    }
    case "RetentionQuery":
      box.append(retentionTable(results, "retention-table"));
      break;
    case "LifecycleQuery":
      box.append(seriesChart({
        series: results.map((r) => ({ label: r.status, data: r.data })),
        labels: results[0].labels || results[0].days || [], kind: "bar", stacked: true, testid: "chart",
      }));
      break;
    case "StickinessQuery":
      box.append(seriesChart({
        series: results.map((r) => ({ label: r.label, data: r.data })), labels: results[0].labels || [], kind: "bar", testid: "chart",
      }));
      break;
    default: {
      const bar = query.trendsFilter?.display === "ActionsBar";
      box.append(seriesChart({
        series: results.map((r) => ({ label: r.label, data: r.data })),
        labels: results[0].labels || [], kind: bar ? "bar" : "line", testid: "chart",
      }));
      box.append(h("table", { class: "data compact", "data-testid": "series-totals" },
        h("tbody", {}, results.map((r) => h("tr", {}, h("td", {}, r.label), h("td", { class: "num" }, number(r.count)))))));
    }
  }
  return box;
}

/** The form's state, read from a query (or a new trends insight). */
function stateOf(query) {
  const q = query || { kind: "TrendsQuery" };
  const series = (q.series || [{ kind: "EventsNode", event: "$pageview" }]).map((node) => ({
    event: node.event ?? "", math: node.math || "total", math_property: node.math_property || "",
  }));
  return {
    kind: q.kind || "TrendsQuery",
    series,
    dateFrom: q.dateRange?.date_from || "-7d",
    interval: q.interval || "day",
    display: q.trendsFilter?.display || "ActionsLineGraph",
    breakdown: q.breakdownFilter?.breakdown || "",
    windowDays: q.funnelsFilter?.funnel_window_interval || 14,
    target: q.retentionFilter?.target_entity?.id || series[0]?.event || "$pageview",
    returning: q.retentionFilter?.returning_entity?.id || q.retentionFilter?.target_entity?.id || series[0]?.event || "$pageview",
    period: q.retentionFilter?.period || "Day",
    intervals: q.retentionFilter?.total_intervals || 8,
  };
}

/** The query the form describes. */
function queryOf(state) {
  const series = state.series.map((one) => {
    const node = { kind: "EventsNode", event: one.event || null, name: one.event || "All events" };
    if (state.kind === "TrendsQuery" && one.math && one.math !== "total") node.math = one.math;
    if (node.math && NEEDS_PROPERTY.has(node.math)) node.math_property = one.math_property;
    return node;
  });
  const common = { kind: state.kind, dateRange: { date_from: state.dateFrom } };
  switch (state.kind) {
    case "FunnelsQuery":
      return { ...common, series, funnelsFilter: { funnel_window_interval: Number(state.windowDays) || 14, funnel_window_interval_unit: "day" } };
    case "RetentionQuery":
      return {
        ...common,
        retentionFilter: {
          period: state.period, total_intervals: Number(state.intervals) || 8, retention_type: "retention_first_time",
          target_entity: { id: state.target, type: "events" }, returning_entity: { id: state.returning, type: "events" },
        },
      };
    case "LifecycleQuery":
      return { ...common, interval: state.interval, series: series.slice(0, 1) };
    case "StickinessQuery":
      return { ...common, interval: state.interval, series };
    default: {
      const query = { ...common, interval: state.interval, series, trendsFilter: { display: state.display } };
      if (state.breakdown) query.breakdownFilter = { breakdown: state.breakdown, breakdown_type: "event" };
      return query;
    }
  }
}

function select(name, options, value, onChange, label) {
  const input = h("select", { name, "aria-label": label || name },
    options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(value) }, text)));
  input.addEventListener("change", () => onChange(input.value));
  return input;
}

function builder(main, context, saved) {
  const state = stateOf(saved ? sourceOf(saved) : null);
  let insight = saved;
  const names = { events: [], properties: [] };
  const controls = h("div", { class: "builder", "data-testid": "insight-builder" });
  const result = h("div", { class: "card" });
  const name = h("input", { name: "name", placeholder: "Name this insight", value: saved?.name || "", "aria-label": "Insight name" });
  const saveButton = h("button", { type: "button", "data-testid": "save-insight" }, saved ? "Save changes" : "Save");
  const saveStatus = h("span", { class: "muted", "data-testid": "save-status" });
  const dashboardPicker = h("select", { name: "dashboard", "aria-label": "Dashboard" });
  const dashboardName = h("input", { name: "dashboard_name", placeholder: "New dashboard's name", "aria-label": "New dashboard name" });
  dashboardPicker.addEventListener("change", () => { dashboardName.hidden = dashboardPicker.value !== "new"; });
  const addButton = h("button", { type: "button", "data-testid": "add-to-dashboard", disabled: !saved }, "Add to dashboard");
  const eventList = h("datalist", { id: "insight-events" });
  const propertyList = h("datalist", { id: "insight-properties" });

  main.append(
    h("p", { class: "muted" }, h("a", { href: "/insights" }, "← Insights")),
    h("h1", {}, saved ? saved.name || "Insight" : "New insight"),
    h("section", { class: "card" }, controls, eventList, propertyList),
    result,
    h("section", { class: "card save-bar" }, name, saveButton, saveStatus, dashboardPicker, dashboardName, addButton));

  function eventInput(value, onChange, label) {
    const input = h("input", { list: "insight-events", value, placeholder: "any event", "aria-label": label });
    input.addEventListener("change", () => onChange(input.value));
    return input;
  }

  function drawControls() {
    clear(controls);
    controls.append(h("div", { class: "tabs", role: "tablist" }, KINDS.map(([kind, label]) =>
      h("button", { type: "button", role: "tab", class: kind === state.kind ? "active" : null, "data-kind": kind,
        "aria-selected": String(kind === state.kind), onclick: () => { state.kind = kind; drawControls(); run(); } }, label))));
    const row = h("div", { class: "controls" });
    if (state.kind === "RetentionQuery") {
      row.append(
        h("label", {}, "Cohort by ", eventInput(state.target, (v) => { state.target = v; }, "Target event")),
        h("label", {}, "returning with ", eventInput(state.returning, (v) => { state.returning = v; }, "Returning event")),
        h("label", {}, "every ", select("period", [["Day", "day"], ["Week", "week"], ["Month", "month"]], state.period, (v) => { state.period = v; })),
        h("label", {}, "for ", h("input", { type: "number", min: 1, max: 30, value: state.intervals, class: "narrow",
          onchange: (e) => { state.intervals = e.target.value; } }), " periods"));
    } else {
      const many = state.kind !== "LifecycleQuery";
      state.series.forEach((one, i) => {
        const step = h("div", { class: "series-row", "data-testid": "series-row" },
          h("span", { class: "series-letter" }, state.kind === "FunnelsQuery" ? `Step ${i + 1}` : String.fromCharCode(65 + i)),
          eventInput(one.event, (v) => { one.event = v; }, `Event ${i + 1}`));
        if (state.kind === "TrendsQuery") {
          step.append(select("math", MATHS, one.math, (v) => { one.math = v; drawControls(); }, `Math ${i + 1}`));
          if (NEEDS_PROPERTY.has(one.math)) {
            const prop = h("input", { list: "insight-properties", value: one.math_property, placeholder: "property" });
            prop.addEventListener("change", () => { one.math_property = prop.value; });
            step.append(prop);
          }
        }
        if (many && state.series.length > 1) {
          step.append(h("button", { type: "button", class: "link", onclick: () => { state.series.splice(i, 1); drawControls(); } }, "remove"));
        }
        row.append(step);
      });
      if (many) {
        row.append(h("button", { type: "button", class: "link", "data-testid": "add-series",
          onclick: () => { state.series.push({ event: "", math: "total", math_property: "" }); drawControls(); } },
        state.kind === "FunnelsQuery" ? "+ step" : "+ series"));
      }
    }
    const options = h("div", { class: "controls" },
      h("label", {}, "Range ", select("range", RANGES, state.dateFrom, (v) => { state.dateFrom = v; }, "Date range")));
    if (["TrendsQuery", "LifecycleQuery", "StickinessQuery"].includes(state.kind)) {
      options.append(h("label", {}, "by ", select("interval", INTERVALS.map((i) => [i, i]), state.interval, (v) => { state.interval = v; }, "Interval")));
    }
    if (state.kind === "TrendsQuery") {
      options.append(
        h("label", {}, "Chart ", select("display", [["ActionsLineGraph", "Line"], ["ActionsBar", "Bar"]], state.display, (v) => { state.display = v; run(); }, "Chart type")),
        h("label", {}, "Breakdown ", (() => {
          const input = h("input", { list: "insight-properties", value: state.breakdown, placeholder: "event property", "aria-label": "Breakdown" });
          input.addEventListener("change", () => { state.breakdown = input.value.trim(); });
          return input;
        })()));
    }
    if (state.kind === "FunnelsQuery") {
      options.append(h("label", {}, "Conversion window ", h("input", { type: "number", min: 1, max: 365, value: state.windowDays, class: "narrow",
        onchange: (e) => { state.windowDays = e.target.value; } }), " days"));
    }
    options.append(h("button", { type: "button", class: "primary", "data-testid": "run-insight", onclick: run }, "Run"));
    controls.append(row, options);
  }

  let running = null;
  async function run() {
    const query = queryOf(state);
    if (running) running.abort();
    running = new AbortController();
    clear(result).append(h("p", { class: "muted" }, "Running…"));
    try {
      const started = performance.now();
      const answer = await context.query(query, running.signal);
      clear(result).append(renderResult(query, answer),
        h("p", { class: "muted" }, `Answered in ${Math.round(performance.now() - started)} ms.`));
    } catch (error) {
      if (error.name === "AbortError") return;
      clear(result).append(notice(error.message, "error"));
    }
  }

  async function loadDashboards() {
    const answer = await context.api(`/api/projects/${context.project.id}/dashboards/`);
    clear(dashboardPicker).append(h("option", { value: "new" }, "New dashboard…"),
      answer.results.map((d) => h("option", { value: d.id }, d.name)));
    dashboardName.hidden = dashboardPicker.value !== "new";
  }

  saveButton.addEventListener("click", async () => {
    const body = { name: name.value.trim() || "Untitled insight", query: { kind: "InsightVizNode", source: queryOf(state) } };
    try {
      const path = `/api/projects/${context.project.id}/insights/`;
      insight = insight
        ? await context.api(`${path}${insight.id}/`, { method: "PATCH", body })
        : await context.api(path, { method: "POST", body });
      saveStatus.textContent = `Saved as “${insight.name}”.`;
      saveStatus.dataset.insightId = insight.id;
      addButton.disabled = false;
      window.history.replaceState({}, "", `/insights/${insight.id}`);
    } catch (error) {
      saveStatus.textContent = `Not saved: ${error.message}`;
    }
  });

  addButton.addEventListener("click", async () => {
    if (!insight) return;
    const path = `/api/projects/${context.project.id}/dashboards/`;
    try {
      let dashboard;
      if (dashboardPicker.value === "new") {
        const title = dashboardName.value.trim() || "My dashboard";
        dashboard = await context.api(path, { method: "POST", body: { name: title, tiles: [{ insight: insight.id }] } });
      } else {
        const current = await context.api(`${path}${dashboardPicker.value}/`);
        const tiles = (current.tiles || []).concat([{ insight: insight.id }]);
        dashboard = await context.api(`${path}${current.id}/`, { method: "PATCH", body: { tiles } });
      }
      saveStatus.textContent = "";
      saveStatus.append("Added to ", h("a", { href: `/dashboards/${dashboard.id}`, "data-testid": "dashboard-link" }, dashboard.name), ".");
      await loadDashboards();
    } catch (error) {
      saveStatus.textContent = `Not added: ${error.message}`;
    }
  });

  drawControls();
  definitions(context).then((found) => {
    names.events = found.events;
    for (const event of found.events) eventList.append(h("option", { value: event }));
    for (const property of found.properties) propertyList.append(h("option", { value: property }));
  }).catch(() => null);
  loadDashboards().catch(() => null);
  run();
}

async function list(main, context) {
  main.append(h("div", { class: "title-row" }, h("h1", {}, "Insights"),
    h("a", { href: "/insights/new", class: "button", "data-testid": "new-insight" }, "New insight")));
  const answer = await context.api(`/api/projects/${context.project.id}/insights/`);
  if (answer.results.length === 0) {
    main.append(notice("No saved insights yet. Build one with “New insight”."));
    return;
  }
  const label = Object.fromEntries(KINDS);
  main.append(h("table", { class: "data", "data-testid": "insights-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Kind"), h("th", {}, "Last changed"))),
    h("tbody", {}, answer.results.slice().reverse().map((insight) => h("tr", {},
      h("td", {}, h("a", { href: `/insights/${insight.id}` }, insight.name || "Untitled")),
      h("td", {}, label[sourceOf(insight).kind] || sourceOf(insight).kind || "–"),
      h("td", {}, time(insight.updated_at || insight.created_at)))))));
}

export async function render(main, context) {
  if (context.subpath === "new") return builder(main, context, null);
  if (context.subpath) {
    try {
      const saved = await context.api(`/api/projects/${context.project.id}/insights/${encodeURIComponent(context.subpath)}/`);
      return builder(main, context, saved);
    } catch (error) {
      main.append(notice(error.status === 404 ? "No such insight in this project." : error.message, "error"));
      return null;
    }
  }
  return list(main, context);
}
