// Events: the newest events of the project, filtered by name, a property,
// a person and a time range; live tail; each event's details on a click.
// Everything comes from one EventsQuery of the query API.
import { h, clear, notice, time, ago, text, propertyTable } from "./dom.js";

const RANGES = [["-1h", "Last hour"], ["-24h", "Last 24 hours"], ["-7d", "Last 7 days"], ["-30d", "Last 30 days"], ["-90d", "Last 90 days"]];
const SELECT = ["uuid", "event", "timestamp", "distinct_id", "person_id", "properties"];
const PAGE = 100;

/** `2026-12-01T09:18:37.123456Z` one microsecond later. */
export function microsecondAfter(iso) {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z$/.exec(iso);
  if (!match) return iso;
  const micros = BigInt(Date.parse(`${match[1]}Z`)) * 1000n + BigInt((match[2] || "").padEnd(6, "0")) + 1n;
  const seconds = micros / 1_000_000n;
  const rest = (micros % 1_000_000n).toString().padStart(6, "0");
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${rest}Z`;
}

export async function definitions(context) {
  const id = context.project.id;
  const [events, properties] = await Promise.all([
    context.api(`/api/projects/${id}/event_definitions/`),
    context.api(`/api/projects/${id}/property_definitions/?type=event`),
  ]);
  return { events: events.results.map((d) => d.name).sort(), properties: properties.results.map((d) => d.name).sort() };
}

/** A table of events; rows open their details. */
export function eventTable(rows, { showPerson = true } = {}) {
  const body = h("tbody");
  for (const row of rows) {
    const [uuid, event, timestamp, distinctId, personId, properties] = row;
    const where = properties.$current_url || properties.$screen_name || properties.$pathname || "";
    const line = h("tr", { class: "clickable", "data-testid": "event-row", "data-uuid": uuid },
      h("td", { title: time(timestamp) }, ago(timestamp)),
      h("td", { class: "event-name" }, event),
      showPerson ? h("td", {}, personId
        ? h("a", { href: `/persons/${encodeURIComponent(personId)}`, "data-testid": "person-link" }, distinctId)
        : distinctId) : null,
      h("td", { class: "mono ellipsis" }, text(where)),
      h("td", {}, text(properties.$lib || "")));
    const details = h("tr", { class: "details", hidden: true },
      h("td", { colspan: showPerson ? 5 : 4 },
        h("p", { class: "muted" }, `uuid ${uuid} · ${time(timestamp)} · distinct id ${distinctId}`),
        propertyTable(properties, "event-properties")));
    line.addEventListener("click", (event) => {
      if (event.target.closest("a")) return;
      details.hidden = !details.hidden;
    });
    body.append(line, details);
  }
  return h("table", { class: "data events", "data-testid": "events-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Event"), showPerson ? h("th", {}, "Person") : null,
      h("th", {}, "URL / screen"), h("th", {}, "Library"))),
    body);
}

export function render(main, context) {
  const params = context.params;
  const form = h("form", { class: "filters", "data-testid": "event-filters" });
  const eventInput = h("select", { name: "event", "aria-label": "Event" }, h("option", { value: "" }, "All events"));
  const keyInput = h("input", { name: "key", placeholder: "property", list: "event-properties-list", value: params.get("key") || "" });
  const valueInput = h("input", { name: "value", placeholder: "equals…", value: params.get("value") || "" });
  const personInput = h("input", { name: "person", placeholder: "distinct id or person uuid", value: params.get("person") || "" });
  const rangeInput = h("select", { name: "after", "aria-label": "Time range" },
    RANGES.map(([value, label]) => h("option", { value, selected: value === (params.get("after") || "-24h") }, label)));
  const live = h("input", { type: "checkbox", name: "live", "data-testid": "live" });
  const propertyList = h("datalist", { id: "event-properties-list" });
  form.append(eventInput, keyInput, valueInput, personInput, rangeInput,
    h("button", { type: "submit" }, "Search"), h("label", { class: "inline" }, live, " Live"), propertyList);
  const status = h("p", { class: "muted", "data-testid": "events-status" });
  const results = h("div");
  const more = h("button", { type: "button", hidden: true }, "Older events");
  main.append(h("h1", {}, "Events"), form, status, results, more);

  let rows = [];
  let timer = null;
  let stopped = false;

  definitions(context).then(({ events, properties }) => {
    for (const name of events) eventInput.append(h("option", { value: name, selected: name === params.get("event") }, name));
    for (const name of properties) propertyList.append(h("option", { value: name }));
  }).catch(() => null);

  async function personId() {
    const wanted = personInput.value.trim();
    if (!wanted) return null;
    const base = `/api/projects/${context.project.id}/persons/`;
    const byId = await context.api(`${base}?distinct_id=${encodeURIComponent(wanted)}`);
    if (byId.results.length) return byId.results[0].id;
    const byUuid = await context.api(`${base}${encodeURIComponent(wanted)}/`).catch(() => null);
    if (byUuid) return byUuid.id;
    throw new Error(`no person has the distinct id or uuid ${wanted}`);
  }

  async function fetchRows(extra) {
    const body = { kind: "EventsQuery", select: SELECT, after: rangeInput.value, limit: PAGE, ...extra };
    if (eventInput.value) body.event = eventInput.value;
    if (keyInput.value.trim()) {
      body.properties = [{ key: keyInput.value.trim(), value: valueInput.value, operator: "exact", type: "event" }];
    }
    const person = await personId();
    if (person) body.personId = person;
    return context.query(body);
  }

  function draw() {
    clear(results).append(rows.length ? eventTable(rows) : notice("No events match in this time range."));
  }

  async function search() {
    status.textContent = "Loading…";
    try {
      const started = performance.now();
      const answer = await fetchRows({});
      rows = answer.results;
      more.hidden = !answer.hasMore;
      status.textContent = `${rows.length}${answer.hasMore ? "+" : ""} events · ${Math.round(performance.now() - started)} ms`;
      draw();
    } catch (error) {
      status.textContent = "";
      clear(results).append(notice(error.message, "error"));
    }
  }

  async function tail() {
    if (stopped || !live.checked) return;
    try {
      // Oldest first from the newest shown, page after page, so a burst
      // larger than one page is shown whole.
      let fresh = [];
      let from = rows[0]?.[2];
      for (let page = 0; page < 10; page += 1) {
        const answer = await fetchRows(from ? { after: from, orderBy: ["timestamp ASC"] } : {});
        const seen = new Set(rows.map((row) => row[0]).concat(fresh.map((row) => row[0])));
        const batch = answer.results.filter((row) => !seen.has(row[0]));
        fresh = fresh.concat(from ? batch : batch.reverse());
        if (!from || !answer.hasMore || batch.length === 0) break;
        from = answer.results[answer.results.length - 1][2];
      }
      if (fresh.length) {
        rows = fresh.reverse().concat(rows).slice(0, 1000);
        draw();
        status.textContent = `${rows.length} events · live`;
      }
    } catch (error) {
      status.textContent = `Live tail paused: ${error.message}`;
    }
    if (!stopped && live.checked) timer = window.setTimeout(tail, 5000);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [key, input] of [["event", eventInput], ["key", keyInput], ["value", valueInput], ["person", personInput], ["after", rangeInput]]) {
      if (input.value) query.set(key, input.value);
    }
    window.history.replaceState({}, "", `/events?${query}`);
    search();
  });
  live.addEventListener("change", () => {
    window.clearTimeout(timer);
    if (live.checked) tail();
  });
  more.addEventListener("click", async () => {
    const oldest = rows[rows.length - 1]?.[2];
    if (!oldest) return;
    try {
      // Up to and including the oldest shown: others of the same
      // microsecond may not be shown yet.
      const answer = await fetchRows({ before: microsecondAfter(oldest) });
      const seen = new Set(rows.map((row) => row[0]));
      rows = rows.concat(answer.results.filter((row) => !seen.has(row[0])));
      more.hidden = !answer.hasMore;
      draw();
    } catch (error) {
      status.textContent = `Could not load older events: ${error.message}`;
    }
  });
  search();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
