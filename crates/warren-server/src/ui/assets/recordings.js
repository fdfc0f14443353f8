// Session recordings: the project's recorded sessions, newest first, and one
// played back with rrweb's player (vendored, loaded only on this page).
import { h, clear, notice, time, number, bytes, seconds } from "./dom.js";

const PAGE = 50;

function recordingTable(recordings) {
  return h("table", { class: "data", "data-testid": "recordings-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Session"), h("th", {}, "Person"), h("th", {}, "Started"),
      h("th", {}, "Length"), h("th", {}, "Clicks"), h("th", {}, "First page"))),
    h("tbody", {}, recordings.map((recording) => h("tr", {},
      h("td", { class: "mono" }, h("a", { href: `/recordings/${encodeURIComponent(recording.id)}`, "data-testid": "recording-link" }, recording.id)),
      h("td", { class: "mono ellipsis" }, recording.person_id
        ? h("a", { href: `/persons/${recording.person_id}` }, recording.distinct_id) : recording.distinct_id),
      h("td", {}, time(recording.start_time)),
      h("td", {}, seconds(recording.recording_duration)),
      h("td", {}, number(recording.click_count)),
      h("td", { class: "ellipsis" }, recording.start_url || "")))));
}

/** A list of recordings, `filter` narrowing it (e.g. `person_id=…`); used by the person page too. */
export function recordingList(context, filter = "") {
  const box = h("div", {}, h("p", { class: "muted" }, "Loading recordings…"));
  let offset = 0;
  async function load() {
    try {
      const answer = await context.api(`/api/projects/${context.project.id}/session_recordings/?limit=${PAGE}&offset=${offset}${filter ? `&${filter}` : ""}`);
      const pager = h("div", { class: "pager" });
      if (offset > 0) pager.append(h("button", { type: "button", onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "Previous"));
      if (answer.has_next) pager.append(h("button", { type: "button", onclick: () => { offset += PAGE; load(); } }, "Next"));
      clear(box).append(answer.results.length ? recordingTable(answer.results) : notice("No recorded sessions."), pager);
    } catch (error) {
      clear(box).append(notice(error.message, "error"));
    }
  }
  load();
  return box;
}

/** The session's events from the API's JSON lines, by window. */
async function windowsOf(context, id) {
  const response = await fetch(`/api/projects/${context.project.id}/session_recordings/${encodeURIComponent(id)}/snapshots/`,
    { credentials: "same-origin" });
  if (!response.ok) throw new Error(response.status === 404 ? "No such recording in this project." : `loading the recording: ${response.status}`);
  const windows = new Map();
  for (const line of (await response.text()).split("\n")) {
    if (!line) continue;
    const { window_id: windowId, event } = JSON.parse(line);
    if (!windows.has(windowId)) windows.set(windowId, []);
    windows.get(windowId).push(event);
  }
  return windows;
}

async function one(main, context, id) {
  main.append(h("p", { class: "muted" }, h("a", { href: "/recordings" }, "← Recordings")));
  let recording;
  try {
    recording = await context.api(`/api/projects/${context.project.id}/session_recordings/${encodeURIComponent(id)}/`);
  } catch (error) {
    main.append(notice(error.status === 404 ? "No such recording in this project." : error.message, "error"));
    return;
  }
  if (!document.querySelector("link[data-player-style]")) {
    document.head.append(h("link", { rel: "stylesheet", href: "/assets/rrweb-player.css", "data-player-style": "" }));
  }
  const stage = h("div", { class: "player", "data-testid": "recording-player" });
  const clock = h("span", { class: "mono", "data-testid": "recording-time" }, "0");
  main.append(
    h("h1", {}, `Recording ${recording.id}`),
    h("p", { class: "muted" }, `${recording.distinct_id} · started ${time(recording.start_time)} · ${seconds(recording.recording_duration)} · ${number(recording.event_count)} events · ${bytes(recording.size_bytes)}`),
    h("p", { class: "muted" }, "Played to ", clock, " ms"),
    stage);
  try {
    const [windows, { Player }] = await Promise.all([windowsOf(context, id), import("./rrweb-player.js")]);
    // rrweb plays one window; the one with the most events is the session's main tab.
    const events = [...windows.values()].sort((a, b) => b.length - a.length)[0] || [];
    if (events.length < 2) {
      stage.append(notice("This recording holds too few events to play."));
      return;
    }
    events.sort((a, b) => a.timestamp - b.timestamp);
    const player = new Player({ target: stage, props: { events, width: 960, height: 540, autoPlay: false, showController: true } });
    player.addEventListener("ui-update-current-time", (event) => { clock.textContent = String(Math.round(event.payload)); });
    const jump = h("input", { type: "number", min: "0", step: "100", "aria-label": "Jump to (ms)", "data-testid": "recording-goto" });
    jump.addEventListener("change", () => player.goto(Number(jump.value)));
    main.append(h("p", {}, "Jump to ", jump, " ms of ", String(player.getMetaData().totalTime)));
  } catch (error) {
    stage.append(notice(error.message, "error"));
  }
}

export function render(main, context) {
  if (context.subpath) return one(main, context, decodeURIComponent(context.subpath));
  main.append(h("h1", {}, "Recordings"), recordingList(context));
  return null;
}
