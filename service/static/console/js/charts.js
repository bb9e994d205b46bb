// Charts drawn with plain SVG and HTML: label distributions, probabilities, and training curves.

import { fmt, h } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  el.append(...children);
  return el;
}

/**
 * Horizontal bars for `{name: value}`: each row shows its name, a bar scaled to `max` (the largest value
 * by default) and the value as text (`format`). A list, so that screen readers read name and value.
 */
export function bars(values, { max, format = (v) => fmt(v), label, highlight } = {}) {
  const entries = Object.entries(values);
  const top = max ?? Math.max(1e-9, ...entries.map(([, v]) => v));
  return h(
    "ul",
    { class: "bars", "aria-label": label },
    entries.map(([name, value]) =>
      h(
        "li",
        { class: name === highlight ? "best-bar" : null, dataset: { name } },
        h("span", { class: "bar-name" }, name),
        h(
          "span",
          { class: "bar-track", "aria-hidden": "true" },
          h("span", { class: "bar-fill", style: { width: `${Math.max(0, Math.min(100, (100 * value) / top))}%` } }),
        ),
        h("span", { class: "bar-value" }, format(value)),
      ),
    ),
  );
}

/** Probabilities as percentage bars, the most probable one highlighted. */
export function probabilityBars(probabilities, label) {
  const best = Object.entries(probabilities).sort((a, b) => b[1] - a[1])[0]?.[0];
  return bars(probabilities, { max: 1, format: (v) => `${(100 * v).toFixed(1)} %`, label, highlight: best });
}

const COLOURS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2"];

/**
 * A line chart of named series `{name: [[x, y], ...]}` with axes, a legend and a text alternative.
 * Scales to its container's width (viewBox); y from 0 when `fromZero`.
 */
export function lineChart(series, { title, xLabel = "epoch", fromZero = false } = {}) {
  const width = 520;
  const height = 200;
  const pad = { left: 44, right: 12, top: 12, bottom: 30 };
  const points = Object.values(series).flat();
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title));
  if (!points.length) {
    figure.append(h("p", { class: "muted" }, "no points yet"));
    return figure;
  }
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 1);
  let y0 = fromZero ? 0 : Math.min(...ys);
  let y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const px = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const py = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  for (const tick of [y0, (y0 + y1) / 2, y1]) {
    svg.append(
      s("line", { x1: pad.left, x2: width - pad.right, y1: py(tick), y2: py(tick), class: "grid" }),
      s("text", { x: pad.left - 6, y: py(tick) + 4, "text-anchor": "end", class: "tick" }, fmt(tick, 2)),
    );
  }
  svg.append(
    s("text", { x: pad.left, y: height - 8, class: "tick" }, String(fmt(x0, 1))),
    s("text", { x: width - pad.right, y: height - 8, "text-anchor": "end", class: "tick" }, String(fmt(x1, 1))),
    s("text", { x: (width + pad.left) / 2, y: height - 8, "text-anchor": "middle", class: "tick" }, xLabel),
  );
  const legend = h("ul", { class: "legend" });
  Object.entries(series).forEach(([name, data], i) => {
    const colour = COLOURS[i % COLOURS.length];
    const path = data.map((p, j) => `${j ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ");
    svg.append(s("path", { d: path, fill: "none", stroke: colour, "stroke-width": 2 }));
    for (const p of data.length < 60 ? data : []) {
      svg.append(s("circle", { cx: px(p[0]), cy: py(p[1]), r: 2.5, fill: colour }));
    }
    const last = data[data.length - 1];
    legend.append(
      h("li", {}, h("span", { class: "swatch", style: { background: colour } }), `${name}: ${last ? fmt(last[1]) : "–"}`),
    );
  });
  figure.append(svg, legend);
  return figure;
}

/** A confusion matrix as a table: rows are the true labels, columns the predicted ones. */
export function confusionTable(labels, matrix) {
  const most = Math.max(1, ...matrix.flat());
  return h(
    "table",
    { class: "confusion" },
    h("caption", {}, "Confusion matrix (rows: true label, columns: predicted)"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), labels.map((l) => h("th", { scope: "col" }, l)))),
    h(
      "tbody",
      {},
      matrix.map((row, i) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, labels[i]),
          row.map((n) => h("td", { style: { "--heat": (n / most).toFixed(2) } }, String(n))),
        ),
      ),
    ),
  );
}
