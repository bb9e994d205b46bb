// How a job's or a model's metrics read: validation reports per mode, and the promotion decision.

import { confusionTable } from "./charts.js";
import { fmt, h } from "./ui.js";

export const SCALARS = ["accuracy", "macro_f1", "weighted_f1"];
export const MODES = [
  ["fusion", "fusion (both inputs)"],
  ["image_only", "image only"],
  ["text_only", "text only"],
];

/** The reports of `metrics` (fusion, image_only, text_only) as one table; null when there are none. */
export function reportTable(metrics, caption) {
  const modes = MODES.filter(([key]) => metrics?.[key] && typeof metrics[key] === "object");
  if (!modes.length) return null;
  return h(
    "table",
    { class: "metrics" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "inputs"), SCALARS.map((m) => h("th", { scope: "col" }, m)))),
    h("tbody", {}, modes.map(([key, title]) =>
      h("tr", {}, h("th", { scope: "row" }, title), SCALARS.map((m) => h("td", {}, fmt(metrics[key][m])))))),
  );
}

/** Everything a finished job measured: validation, a separate test set, cross-validation, the matrix. */
export function metricsSection(metrics) {
  if (!metrics) return null;
  const labels = metrics.labels || Object.keys(metrics.fusion?.per_class || {});
  const matrix = metrics.fusion?.confusion_matrix;
  const extra = Object.entries(metrics).filter(([key, value]) =>
    !["fusion", "image_only", "text_only", "labels", "promotion", "test", "cv"].includes(key) && typeof value !== "object");
  const tables = [
    reportTable(metrics, "Validation metrics"),
    metrics.test ? reportTable(metrics.test, "Test set (held out, not used to pick the epoch or to promote)") || plainTable(metrics.test, "Test set") : null,
    metrics.cv ? plainTable(metrics.cv, "Cross-validation") : null,
    matrix && labels.length ? confusionTable(labels, matrix) : null,
  ];
  return h(
    "div",
    { class: "metrics-section", id: "job-metrics" },
    // Each table scrolls on its own on a narrow screen rather than widening the page.
    tables.filter(Boolean).map((table) => h("div", { class: "scroll" }, table)),
    extra.length ? h("p", { class: "muted" }, extra.map(([k, v]) => `${k}: ${fmt(v)}`).join(" · ")) : null,
  );
}

/** Scalars of a nested object as "path: value" rows (for shapes this console does not know). */
function plainTable(value, caption) {
  const rows = [];
  const walk = (v, path) => {
    if (v && typeof v === "object" && !Array.isArray(v)) Object.entries(v).forEach(([k, c]) => walk(c, [...path, k]));
    else if (typeof v !== "object" || v === null) rows.push([path.join("."), v]);
  };
  walk(value, []);
  return h("table", { class: "metrics" }, h("caption", {}, caption),
    h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, fmt(v))))));
}

/** The `if_better` (or other policy) decision of a finished job, in words. */
export function promotionText(promotion) {
  if (!promotion) return null;
  const { policy, metric, value, previous_version: previous, previous_value: before, promoted, reason } = promotion;
  let why;
  if (policy === "if_better" && previous && typeof before === "number") {
    why = `promote=if_better compares the validation ${metric}: this model ${fmt(value, 4)} against the active ${previous}'s ${fmt(before, 4)}; ` +
      (promoted ? "it is higher, so the new version went live." : "it is not higher, so the active version stayed.");
  } else if (policy === "if_better") {
    why = promoted
      ? "promote=if_better: no model was active, so the new version went live."
      : `promote=if_better: the active ${previous} has no recorded ${metric} to compare with, so it stayed.`;
  } else if (policy === "always") {
    why = "promote=always: the new version went live whatever its metric.";
  } else {
    why = "promote=never: the new version was kept in the store, inactive.";
  }
  return h("p", { class: promoted ? "ok promotion" : "warn promotion" }, h("strong", {}, promoted ? "Promoted. " : "Not promoted. "), why, h("br"), h("small", { class: "muted" }, `worker's decision: ${reason}`));
}
