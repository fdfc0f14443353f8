// Charts as plain SVG: line and bar charts of series over labelled
// buckets, sparklines, funnel steps and retention tables. Each returns an
// element; hovering a point or bar shows its value (an SVG <title>).
import { h, s, short, number } from "./dom.js";

export const PALETTE = ["#1f77b4", "#e4572e", "#29a36a", "#9467bd", "#f5a623", "#17becf", "#8c564b", "#e377c2"];

const WIDTH = 800;
const MARGIN = { top: 12, right: 16, bottom: 34, left: 56 };

/** Round steps for an axis from `low` to `high`. */
function ticks(low, high, count = 5) {
  if (low === high) {
    high = low + 1;
  }
  const raw = (high - low) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((m) => m >= raw) || raw;
  // From the step at or below `low` to the one at or above `high`, so the
  // axis covers every value.
  const first = Math.floor(low / step);
  const last = Math.ceil(high / step - 1e-9);
  const out = [];
  for (let i = first; i <= last; i += 1) out.push(Number((i * step).toPrecision(12)));
  return out;
}

function legend(series) {
  if (series.length < 2) return null;
  return h("ul", { class: "legend" }, series.map((one, i) =>
    h("li", {}, h("span", { class: "swatch", dataset: { color: String(i % PALETTE.length) } }), one.label)));
}

/**
 * A chart of `series` ([{label, data: [numbers]}]) over `labels`.
 * `kind` is "line" or "bar"; `stacked` stacks bars (negative ones below 0).
 */
export function seriesChart({ series, labels, kind = "line", stacked = false, height = 260, format = short, testid }) {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = height - MARGIN.top - MARGIN.bottom;
  const n = Math.max(1, labels.length);
  let low = 0;
  let high = 0;
  if (stacked) {
    for (let i = 0; i < n; i += 1) {
      let up = 0;
      let down = 0;
      for (const one of series) {
        const v = Number(one.data[i]) || 0;
        if (v >= 0) up += v; else down += v;
      }
      high = Math.max(high, up);
      low = Math.min(low, down);
    }
  } else {
    for (const one of series) {
      for (const v of one.data) {
        if (v === null || v === undefined) continue;
        high = Math.max(high, Number(v));
        low = Math.min(low, Number(v));
      }
    }
  }
  const axis = ticks(low, high);
  const top = axis[axis.length - 1];
  const bottom = axis[0];
  const y = (v) => MARGIN.top + plotHeight - ((v - bottom) / (top - bottom || 1)) * plotHeight;
  const slot = plotWidth / n;
  const x = (i) => MARGIN.left + slot * i + slot / 2;

  const chart = s("svg", {
    viewBox: `0 0 ${WIDTH} ${height}`, class: `chart ${kind}`, role: "img", "data-testid": testid,
    "aria-label": series.map((one) => one.label).join(", "),
  });
  for (const t of axis) {
    chart.append(
      s("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(t), y2: y(t), class: t === 0 ? "zero" : "grid" }),
      s("text", { x: MARGIN.left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, format(t)),
    );
  }
  const every = Math.max(1, Math.ceil(n / 8));
  labels.forEach((label, i) => {
    if (i % every === 0) {
      chart.append(s("text", { x: x(i), y: height - 12, class: "tick", "text-anchor": "middle" }, label));
    }
  });

  if (kind === "bar") {
    const groups = stacked ? 1 : Math.max(1, series.length);
    const barWidth = Math.max(1, (slot * 0.8) / groups);
    const up = new Array(n).fill(0);
    const down = new Array(n).fill(0);
    series.forEach((one, k) => {
      one.data.forEach((raw, i) => {
        const v = Number(raw) || 0;
        let from = 0;
        if (stacked) {
          from = v >= 0 ? up[i] : down[i];
          if (v >= 0) up[i] += v; else down[i] += v;
        }
        const left = x(i) - (slot * 0.8) / 2 + (stacked ? 0 : k * barWidth);
        const y1 = y(from + v);
        const y0 = y(from);
        chart.append(s("rect", {
          x: left, y: Math.min(y0, y1), width: barWidth, height: Math.max(0, Math.abs(y0 - y1)),
          class: `series-${k % PALETTE.length}`,
        }, s("title", {}, `${one.label} · ${labels[i] ?? ""}: ${number(v)}`)));
      });
    });
  } else {
    series.forEach((one, k) => {
      const points = one.data.map((v, i) => (v === null || v === undefined ? null : [x(i), y(Number(v))]));
      let path = "";
      points.forEach((p, i) => {
        if (!p) return;
        path += `${path && points[i - 1] ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)}`;
      });
      chart.append(s("path", { d: path, class: `line series-${k % PALETTE.length}` }));
      points.forEach((p, i) => {
        if (!p) return;
        chart.append(s("circle", { cx: p[0], cy: p[1], r: n > 60 ? 1.5 : 3, class: `series-${k % PALETTE.length}` },
          s("title", {}, `${one.label} · ${labels[i] ?? ""}: ${number(one.data[i])}`)));
      });
    });
  }
  return h("figure", { class: "chart-box" }, chart, legend(series));
}

/** A small line of the last values, no axes. */
export function sparkline(values, { width = 160, height = 36 } = {}) {
  const clean = values.map((v) => (v === null || v === undefined ? 0 : Number(v)));
  const high = Math.max(1e-9, ...clean);
  const step = width / Math.max(1, clean.length - 1);
  const d = clean.map((v, i) => `${i ? "L" : "M"}${(i * step).toFixed(1)},${(height - 2 - (v / high) * (height - 4)).toFixed(1)}`).join("");
  return s("svg", { viewBox: `0 0 ${width} ${height}`, class: "sparkline", "aria-hidden": "true" },
    s("path", { d, class: "line series-0" }));
}

/** Funnel steps: one bar per step, with the share of the first step. */
export function funnelChart(steps, testid) {
  const first = steps[0]?.count || 0;
  return h("div", { class: "funnel", "data-testid": testid }, steps.map((step, i) => {
    const share = first ? (step.count / first) * 100 : 0;
    const previous = i ? steps[i - 1].count : step.count;
    const fromPrevious = previous ? (step.count / previous) * 100 : 0;
    const bar = h("div", { class: "funnel-bar" });
    bar.style.width = `${Math.max(share, 0.5)}%`;
    return h("div", { class: "funnel-step" },
      h("div", { class: "funnel-label" }, `${i + 1}. ${step.custom_name || step.name}`),
      h("div", { class: "funnel-track" }, bar),
      h("div", { class: "funnel-figures" },
        h("strong", { class: "step-count" }, number(step.count)),
        ` · ${share.toFixed(1)}% of step 1`,
        i ? ` · ${fromPrevious.toFixed(1)}% from step ${i}` : ""));
  }));
}

/** A retention cohort table, cells shaded by their share of the cohort. */
export function retentionTable(results, testid) {
  const width = Math.max(0, ...results.map((row) => row.values.length));
  const head = h("tr", {}, h("th", {}, "Cohort"), h("th", {}, "Persons"),
    Array.from({ length: width }, (_, i) => h("th", {}, results[0]?.values ? `${i}` : "")));
  const rows = results.map((row) => {
    const size = row.values[0]?.count || 0;
    return h("tr", {}, h("th", {}, row.label || row.date?.slice(0, 10)), h("td", {}, number(size)),
      row.values.map((cell) => {
        const share = size ? (cell.count / size) * 100 : 0;
        const td = h("td", { class: "retention-cell", title: `${number(cell.count)} persons` }, `${share.toFixed(1)}%`);
        td.style.setProperty("--share", String(share / 100));
        return td;
      }));
  });
  return h("table", { class: "retention", "data-testid": testid }, h("thead", {}, head), h("tbody", {}, rows));
}
