// Small helpers for building the pages: elements, SVG, and how numbers,
// sizes and times are shown. Everything the dashboard draws goes through
// `h` and `s`, which set text with textContent, never innerHTML, so no
// event property can turn into markup.

const SVG = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key === "value" && "value" in element) {
      element.value = value;
    } else if (key === "checked" || key === "disabled" || key === "selected") {
      element[key] = Boolean(value);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** An HTML element: `h("a", {href: "/"}, "Home")`. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

export function clear(element) {
  while (element.firstChild) element.firstChild.remove();
  return element;
}

const compact = new Intl.NumberFormat("en", { maximumFractionDigits: 1, notation: "compact" });
const plain = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });

/** 1234 → "1,234"; 0.5 → "0.5"; big numbers stay exact. */
export function number(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return plain.format(value);
}

/** 1234567 → "1.2M": for axes and tiles. */
export function short(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Math.abs(value) < 1000 ? plain.format(value) : compact.format(value);
}

export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let amount = value;
  let unit = 0;
  while (Math.abs(amount) >= 1024 && unit < units.length - 1) {
    amount /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? amount : amount.toFixed(1)} ${units[unit]}`;
}

export function millis(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  return `${value < 10 ? value.toFixed(2) : value.toFixed(0)} ms`;
}

export function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 60) return `${value.toFixed(value < 10 ? 2 : 0)} s`;
  if (value < 3600) return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  if (value < 86400) return `${Math.floor(value / 3600)} h ${Math.round((value % 3600) / 60)} min`;
  return `${Math.floor(value / 86400)} d ${Math.round((value % 86400) / 3600)} h`;
}

/** An ISO time in the viewer's zone, to the second. */
export function time(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return String(iso);
  return at.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** "3 minutes ago". */
export function ago(iso) {
  const at = new Date(iso).getTime();
  if (Number.isNaN(at)) return "–";
  const secondsAgo = Math.max(0, (Date.now() - at) / 1000);
  if (secondsAgo < 60) return `${Math.round(secondsAgo)} s ago`;
  if (secondsAgo < 3600) return `${Math.round(secondsAgo / 60)} min ago`;
  if (secondsAgo < 86400) return `${Math.round(secondsAgo / 3600)} h ago`;
  return `${Math.round(secondsAgo / 86400)} d ago`;
}

/** A value of unknown shape, as short text for a table cell. */
export function text(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A key/value table of an object's entries, sorted by key. */
export function propertyTable(object, testid) {
  const keys = Object.keys(object || {}).sort();
  if (keys.length === 0) return h("p", { class: "muted" }, "No properties.");
  return h("table", { class: "properties", "data-testid": testid },
    h("tbody", {}, keys.map((key) => h("tr", {}, h("th", {}, key), h("td", {}, text(object[key]))))));
}

/** A message in place of a page's content. */
export function notice(message, kind = "info") {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
}
