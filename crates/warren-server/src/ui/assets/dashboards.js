// Dashboards: saved insights side by side, each run afresh when shown.
import { h, clear, notice, time } from "./dom.js";
import { renderResult, sourceOf } from "./insights.js";

async function list(main, context) {
  const path = `/api/projects/${context.project.id}/dashboards/`;
  const name = h("input", { name: "name", placeholder: "New dashboard's name", "aria-label": "Dashboard name" });
  const create = h("form", { class: "filters" }, name, h("button", { type: "submit" }, "Create dashboard"));
  const problem = h("p", { class: "error", role: "alert" });
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const made = await context.api(path, { method: "POST", body: { name: name.value.trim() || "My dashboard", tiles: [] } });
      context.navigate(`/dashboards/${made.id}`);
    } catch (error) {
      problem.textContent = `Not created: ${error.message}`;
    }
  });
  main.append(h("h1", {}, "Dashboards"), create, problem);
  const answer = await context.api(path);
  if (answer.results.length === 0) {
    main.append(notice("No dashboards yet. Save an insight and add it to one, or create one here."));
    return;
  }
  main.append(h("table", { class: "data", "data-testid": "dashboards-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Insights"), h("th", {}, "Last changed"))),
    h("tbody", {}, answer.results.map((d) => h("tr", {},
      h("td", {}, h("a", { href: `/dashboards/${d.id}` }, d.name)),
      h("td", {}, String((d.tiles || []).filter((t) => t.insight).length)),
      h("td", {}, time(d.updated_at || d.created_at)))))));
}

async function tile(context, insightId) {
  const card = h("section", { class: "card tile-card", "data-testid": "dashboard-tile" }, h("p", { class: "muted" }, "Loading…"));
  (async () => {
    try {
      const insight = await context.api(`/api/projects/${context.project.id}/insights/${insightId}/`);
      const query = sourceOf(insight);
      const heading = h("h3", {}, h("a", { href: `/insights/${insight.id}` }, insight.name || "Untitled"));
      const answer = await context.query(query);
      clear(card).append(heading, renderResult(query, answer, "tile-result"));
    } catch (error) {
      clear(card).append(notice(error.status === 404 ? "This insight was deleted." : error.message, "error"));
    }
  })();
  return card;
}

async function one(main, context, id) {
  main.append(h("p", { class: "muted" }, h("a", { href: "/dashboards" }, "← Dashboards")));
  let dashboard;
  try {
    dashboard = await context.api(`/api/projects/${context.project.id}/dashboards/${encodeURIComponent(id)}/`);
  } catch (error) {
    main.append(notice(error.status === 404 ? "No such dashboard in this project." : error.message, "error"));
    return;
  }
  main.append(h("h1", { "data-testid": "dashboard-name" }, dashboard.name));
  if (dashboard.description) main.append(h("p", {}, dashboard.description));
  const grid = h("div", { class: "grid-2", "data-testid": "dashboard-tiles" });
  main.append(grid);
  const tiles = dashboard.tiles || [];
  if (tiles.length === 0) {
    grid.append(notice("Nothing here yet: open an insight and add it to this dashboard."));
  }
  for (const t of tiles) {
    if (t.insight) grid.append(await tile(context, t.insight));
    else if (t.text) grid.append(h("section", { class: "card" }, h("p", {}, t.text.body)));
  }
}

export function render(main, context) {
  if (context.subpath) return one(main, context, decodeURIComponent(context.subpath));
  return list(main, context);
}
