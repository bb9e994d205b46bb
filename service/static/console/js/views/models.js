// Models: every version side by side (metrics and lineage: dataset, params, job), the active one marked,
// activation / rollback after a confirmation, and the promotion decision of the job that trained it.

import { get, post } from "../api.js";
import { MODES, promotionText, SCALARS } from "../metrics.js";
import { busy, changeButton, confirmAction, errorBox, fill, fmt, fmtTime, h } from "../ui.js";

function score(version, mode, metric) {
  const report = version.metrics?.[mode];
  if (report && typeof report === "object") return report[metric];
  return mode === "fusion" ? version.metrics?.[metric] : undefined; // hand-made checkpoints are flat
}

export function modelsView(root, { onChange }) {
  const table = h("div", { id: "models-table", class: "scroll" });
  const outcome = h("div", { id: "models-outcome", "aria-live": "polite" });
  fill(
    root,
    h("h1", { id: "h-models" }, "Models"),
    h("p", { class: "muted" }, "Every version in the store, oldest first. Activating an older version is the rollback; requests in flight finish on the previous one."),
    outcome,
    table,
  );

  async function activate(version, active, button) {
    const older = active && version.version < active;
    const verb = older ? "Roll back" : "Activate";
    const ok = await confirmAction(
      `${verb} to ${version.version}?`,
      `Every prediction will be answered by ${version.version}${active ? ` instead of ${active}` : ""}. You can switch back at any time.`,
      verb,
    );
    if (!ok) return;
    await busy(button, async () => {
      try {
        await post(`/models/${encodeURIComponent(version.version)}/activate`);
        fill(outcome, h("p", { class: "ok", role: "status" }, `${version.version} is active.`));
        await refresh();
        onChange();
      } catch (err) {
        fill(outcome, errorBox(err, `Could not activate ${version.version}`));
      }
    });
  }

  async function refresh() {
    let listing;
    let jobs = [];
    try {
      [listing, { jobs }] = await Promise.all([get("/models"), get("/jobs?limit=1000")]);
    } catch (err) {
      fill(table, errorBox(err, "Could not list the models"));
      return;
    }
    const byVersion = new Map(jobs.filter((j) => j.model_version).map((j) => [j.model_version, j]));
    const versions = listing.versions;
    if (!versions.length) {
      fill(table, h("p", { class: "muted" }, "The store is empty: train a model in Jobs."));
      return;
    }
    const rowFor = (title, cell) => h("tr", {}, h("th", { scope: "row" }, title), versions.map((v) => h("td", {}, cell(v))));
    const best = (mode, metric) => Math.max(...versions.map((v) => score(v, mode, metric) ?? -Infinity));
    const measured = (mode, metric) => versions.some((v) => score(v, mode, metric) !== undefined);
    const metricRows = MODES.flatMap(([mode, title]) =>
      SCALARS.filter((metric) => measured(mode, metric)).map((metric) => rowFor(`${title}: ${metric}`, (v) => {
        const value = score(v, mode, metric);
        return value === undefined ? "–" : h("span", { class: value === best(mode, metric) && versions.length > 1 ? "best" : null }, fmt(value));
      })));
    const testRows = versions.some((v) => v.metrics?.test) ? SCALARS.map((metric) =>
      rowFor(`test set: ${metric}`, (v) => fmt(v.metrics?.test?.fusion?.[metric] ?? v.metrics?.test?.[metric]))) : [];
    fill(
      table,
      h("table", { class: "models" },
        h("caption", {}, `${versions.length} version${versions.length === 1 ? "" : "s"}; active: ${listing.active || "none"}; this replica serves ${listing.serving || "nothing"}`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "version"), versions.map((v) =>
          h("th", { scope: "col", class: v.active ? "active" : null, dataset: { version: v.version } },
            h("code", {}, v.version), v.active ? h("span", { class: "badge active-badge" }, "active") : null)))),
        h("tbody", {},
          rowFor("", (v) => v.active ? h("span", { class: "muted" }, "serving predictions")
            : changeButton(listing.active && v.version < listing.active ? "Roll back" : "Activate",
                (e) => activate(v, listing.active, e.currentTarget), { "aria-label": `activate ${v.version}`, dataset: { version: v.version } })),
          rowFor("created", (v) => fmtTime(v.created_at)),
          rowFor("model", (v) => `${v.image_encoder} + ${v.text_encoder}, ${v.fusion}`),
          rowFor("labels", (v) => v.labels.join(", ")),
          metricRows,
          testRows,
          rowFor("dataset", (v) => byVersion.get(v.version)?.dataset ?? (v.dataset_fingerprint ? `fingerprint ${v.dataset_fingerprint.slice(0, 12)}` : "–")),
          rowFor("job", (v) => {
            const job = byVersion.get(v.version);
            return job ? h("a", { href: `#jobs/${job.id}` }, job.id.slice(0, 8)) : h("span", { class: "muted" }, "not trained by a job");
          }),
          rowFor("promotion", (v) => promotionText(byVersion.get(v.version)?.metrics?.promotion) ?? "–"),
          rowFor("params", (v) => {
            const params = byVersion.get(v.version)?.params ?? v.train_config;
            return params ? h("details", {}, h("summary", {}, "show"), h("pre", {}, JSON.stringify(params, null, 2))) : "–";
          }),
          versions.some((v) => v.error) ? rowFor("error", (v) => v.error ?? "") : null)),
    );
  }

  return { refresh };
}
