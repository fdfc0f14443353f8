// Persons: search by distinct id, uuid, email, name or key=value; one person's
// properties, distinct ids, recordings and events.
import { h, clear, notice, time, number, propertyTable } from "./dom.js";
import { eventTable } from "./events.js";
import { recordingList } from "./recordings.js";

const PAGE = 50;

function displayName(person) {
  const p = person.properties || {};
  return p.email || p.name || p.$email || person.distinct_ids[0] || person.id;
}

function list(main, context) {
  const search = h("input", { type: "search", name: "search", placeholder: "distinct id, email, name, or key=value",
    value: context.params.get("search") || "", "aria-label": "Search persons" });
  const form = h("form", { class: "filters" }, search, h("button", { type: "submit" }, "Search"));
  const status = h("p", { class: "muted" });
  const results = h("div");
  const pager = h("div", { class: "pager" });
  main.append(h("h1", {}, "Persons"), form, status, results, pager);
  let offset = Number(context.params.get("offset") || 0);

  async function load() {
    status.textContent = "Loading…";
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (search.value.trim()) query.set("search", search.value.trim());
    try {
      const answer = await context.api(`/api/projects/${context.project.id}/persons/?${query}`);
      status.textContent = `${number(answer.count)} persons in the project${search.value.trim() ? `; ${answer.results.length}${answer.next ? "+" : ""} match` : ""}`;
      clear(results).append(answer.results.length === 0 ? notice("No persons match.") :
        h("table", { class: "data", "data-testid": "persons-table" },
          h("thead", {}, h("tr", {}, h("th", {}, "Person"), h("th", {}, "Distinct ids"), h("th", {}, "Identified"), h("th", {}, "First seen"))),
          h("tbody", {}, answer.results.map((person) => h("tr", {},
            h("td", {}, h("a", { href: `/persons/${person.id}`, "data-testid": "person-link" }, displayName(person))),
            h("td", { class: "mono ellipsis" }, person.distinct_ids.join(", ")),
            h("td", {}, person.is_identified ? "yes" : "no"),
            h("td", {}, time(person.created_at)))))));
      clear(pager);
      if (offset > 0) pager.append(h("button", { type: "button", onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "Previous"));
      if (answer.next) pager.append(h("button", { type: "button", onclick: () => { offset += PAGE; load(); } }, "Next"));
    } catch (error) {
      status.textContent = "";
      clear(results).append(notice(error.message, "error"));
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    window.history.replaceState({}, "", search.value.trim() ? `/persons?search=${encodeURIComponent(search.value.trim())}` : "/persons");
    load();
  });
  load();
}

async function one(main, context, id) {
  main.append(h("p", { class: "muted" }, h("a", { href: "/persons" }, "← Persons")));
  let person;
  try {
    person = await context.api(`/api/projects/${context.project.id}/persons/${encodeURIComponent(id)}/`);
  } catch (error) {
    main.append(notice(error.status === 404 ? "No such person in this project." : error.message, "error"));
    return;
  }
  const events = h("div", { "data-testid": "person-events" }, h("p", { class: "muted" }, "Loading events…"));
  main.append(
    h("h1", { "data-testid": "person-name" }, displayName(person)),
    h("p", { class: "muted" }, `uuid ${person.id} · first seen ${time(person.created_at)} · ${person.is_identified ? "identified" : "anonymous"}`),
    h("div", { class: "grid-2" },
      h("section", { class: "card" }, h("h3", {}, "Properties"), propertyTable(person.properties, "person-properties")),
      h("section", { class: "card" }, h("h3", {}, "Distinct ids"),
        h("ul", { class: "plain", "data-testid": "person-distinct-ids" }, person.distinct_ids.map((d) => h("li", { class: "mono" }, d))))),
    h("section", { class: "card" }, h("h3", {}, "Recordings"), recordingList(context, `person_id=${person.id}`)),
    h("section", { class: "card" }, h("h3", {}, "Events (last 90 days)"), events));
  try {
    const answer = await context.query({
      kind: "EventsQuery", select: ["uuid", "event", "timestamp", "distinct_id", "person_id", "properties"],
      personId: person.id, after: "-90d", limit: 100,
    });
    clear(events).append(answer.results.length ? eventTable(answer.results, { showPerson: false }) : notice("No events in the last 90 days."));
  } catch (error) {
    clear(events).append(notice(error.message, "error"));
  }
}

export function render(main, context) {
  if (context.subpath) return one(main, context, decodeURIComponent(context.subpath));
  return list(main, context);
}
