// The dashboard's shell: who is signed in, which project is shown, the
// navigation, and a router that draws the page a path names. Each page
// module exports `render(main, context)`, which may return a function
// that stops what the page keeps running (polling) when it is left.
import { api, query } from "./api.js";
import { h, clear, notice } from "./dom.js";
import * as overview from "./overview.js";
import * as events from "./events.js";
import * as persons from "./persons.js";
import * as web from "./web.js";
import * as recordings from "./recordings.js";
import * as insights from "./insights.js";
import * as dashboards from "./dashboards.js";
import * as system from "./system.js";

const PAGES = [
  { path: "/", title: "Overview", module: overview },
  { path: "/events", title: "Events", module: events },
  { path: "/persons", title: "Persons", module: persons },
  { path: "/web", title: "Web analytics", module: web },
  // Loaded afresh: the player needs the page policy the server sends with it.
  { path: "/recordings", title: "Recordings", module: recordings, reload: true },
  { path: "/insights", title: "Insights", module: insights },
  { path: "/dashboards", title: "Dashboards", module: dashboards },
  { path: "/system", title: "System", module: system },
];

const PROJECT_KEY = "warren.project";
let stopPage = null;
/** Counts page draws, so a page that finishes loading after it was left stops at once. */
let generation = 0;

function pageFor(pathname) {
  if (pathname === "/") return PAGES[0];
  return PAGES.find((page) => page.path !== "/" && (pathname === page.path || pathname.startsWith(`${page.path}/`)));
}

async function loadProjects(me) {
  const projects = [];
  for (const organization of me.organizations) {
    const answer = await api(`/api/organizations/${organization.id}/projects/`);
    for (const project of answer.results) projects.push({ ...project, organization_name: organization.name });
  }
  return projects;
}

function drawNav(current) {
  const nav = clear(document.getElementById("nav"));
  for (const page of PAGES) {
    nav.append(h("a", { href: page.path, class: page === current ? "active" : null, "data-nav": page.title }, page.title));
  }
}

function chooseProject(projects) {
  const saved = Number(window.localStorage.getItem(PROJECT_KEY));
  return projects.find((p) => p.id === saved)
    || projects.find((p) => !p.internal)
    || projects[0];
}

async function boot() {
  const me = await api("/api/users/@me/");
  const projects = await loadProjects(me);
  const context = {
    me,
    projects,
    project: chooseProject(projects),
    api,
    query: (body, signal) => query(context.project.id, body, signal),
    navigate,
  };
  document.getElementById("user").textContent = me.email;
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/api/logout/", { method: "POST" }).catch(() => null);
    window.location.assign("/login");
  });
  const picker = document.getElementById("project");
  for (const project of projects) {
    picker.append(h("option", { value: project.id, selected: project.id === context.project?.id },
      project.internal ? `${project.name} (Warren's own)` : project.name));
  }
  picker.addEventListener("change", () => {
    context.project = projects.find((p) => String(p.id) === picker.value);
    window.localStorage.setItem(PROJECT_KEY, picker.value);
    draw(context);
  });

  // Links inside the app change the page without reloading it.
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link || link.target || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    const url = new URL(link.href, window.location.href);
    // A page that reloads does so on the way in and on the way out, so the
    // recordings' looser policy never outlives their pages.
    const here = pageFor(window.location.pathname);
    if (url.origin !== window.location.origin || !pageFor(url.pathname) || pageFor(url.pathname).reload || here?.reload) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", () => draw(context));

  function navigate(path) {
    if (path !== window.location.pathname + window.location.search) window.history.pushState({}, "", path);
    draw(context);
  }
  draw(context);
}

function draw(context) {
  if (stopPage) {
    stopPage();
    stopPage = null;
  }
  const page = pageFor(window.location.pathname) || PAGES[0];
  drawNav(page);
  document.title = `${page.title} · Warren`;
  const main = clear(document.getElementById("page"));
  if (!context.project) {
    main.append(notice("You are not a member of any project yet. Ask an admin to add you.", "error"));
    return;
  }
  const path = window.location.pathname.slice(page.path.length).replace(/^\//, "");
  generation += 1;
  const mine = generation;
  try {
    const stop = page.module.render(main, { ...context, subpath: path, params: new URLSearchParams(window.location.search) });
    Promise.resolve(stop).then((fn) => {
      if (typeof fn !== "function") return;
      if (mine === generation) stopPage = fn; else fn();
    }).catch((error) => showError(main, error));
  } catch (error) {
    showError(main, error);
  }
}

function showError(main, error) {
  main.append(notice(`Something went wrong: ${error.message}`, "error"));
}

boot().catch((error) => {
  const main = clear(document.getElementById("page"));
  main.append(notice(`Warren could not load: ${error.message}`, "error"));
});
