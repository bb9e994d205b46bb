// Jobs: start one (a form built from the job schema in /openapi.json), follow it live over its event
// stream (stage, epoch, ETA, curves), cancel it, open its report, and read why it failed.

import { followJob, get, post } from "../api.js";
import { lineChart } from "../charts.js";
import { metricsSection, promotionText, SCALARS } from "../metrics.js";
import { resolve, schemaForm } from "../schema_form.js";
import { busy, changeButton, errorBox, fill, fmt, fmtSeconds, fmtTime, h } from "../ui.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export function jobsView(root, { openapi, onChange }) {
  const formArea = h("div", { id: "job-form-area" });
  const formOutcome = h("div", { id: "job-form-outcome", "aria-live": "polite" });
  const list = h("div", { id: "job-list" });
  const detail = h("section", { id: "job-detail", "aria-live": "polite", "aria-label": "Selected job" });
  const datalist = h("datalist", { id: "dataset-refs" });
  let selected = null;
  let stopFollowing = null;
  const stepLosses = new Map(); // job id -> [[fractional epoch, loss], ...] seen live
  let listTimer = null;
  let form = null;

  const bodySchema = openapi.paths?.["/jobs"]?.post?.requestBody?.content?.["application/json"]?.schema;
  if (bodySchema) {
    form = schemaForm(openapi, resolve(openapi, bodySchema), { datalist: "dataset-refs" });
    const start = changeButton("Start job", null, { type: "submit", class: "primary", id: "job-start" });
    fill(
      formArea,
      h("form", { class: "stack", onsubmit: (e) => submit(e, start.querySelector("button")), novalidate: true, "aria-label": "Start a job" },
        h("p", { class: "muted" }, "Leave the recipe as it is for the default recipe; changed fields are sent, the rest keep their defaults."),
        form.element,
        h("div", { class: "row" }, start, h("button", { type: "button", onclick: () => form.reset() }, "Back to the default recipe")),
        formOutcome),
      datalist,
    );
  } else {
    fill(formArea, h("p", { class: "warn" }, "This server's /openapi.json has no POST /jobs request schema."));
  }

  async function submit(event, button) {
    event.preventDefault();
    fill(formOutcome);
    const body = form.read();
    await busy(button, async () => {
      try {
        const job = await post("/jobs", { json: body });
        fill(formOutcome, h("p", { class: "ok", role: "status" }, `Job ${job.id} queued.`));
        await refresh();
        select(job.id, job);
      } catch (err) {
        if (err.field && form.showError(err.field, err.message)) fill(formOutcome, errorBox(err, "The job was refused"));
        else fill(formOutcome, errorBox(err, "The job was refused"));
      }
    });
  }

  function select(id, job) {
    if (stopFollowing) stopFollowing();
    stopFollowing = null;
    selected = id;
    for (const row of list.querySelectorAll("tr[data-id]")) row.classList.toggle("selected", row.dataset.id === id);
    if (job) renderDetail(job);
    stopFollowing = followJob(id, (snapshot) => {
      if (selected !== id) return;
      noteStepLoss(snapshot);
      renderDetail(snapshot);
    }, () => {
      refresh();
      onChange();
    });
  }

  function noteStepLoss(job) {
    const p = job.progress;
    if (!p || p.stage !== "training" || p.loss === null || !p.steps) return;
    const points = stepLosses.get(job.id) || [];
    const x = p.epoch - 1 + p.step / p.steps;
    if (!points.length || points[points.length - 1][0] < x) points.push([x, p.loss]);
    stepLosses.set(job.id, points);
  }

  // Progress events re-render the detail several times a second. The action row, the report image and the
  // recipe are kept across them (changed in place, never rebuilt): a button replaced between a
  // user's mouse-down and mouse-up loses the click, and an opened <details> would close again.
  // The detail is [head, actions, body, report image, recipe]; a progress event refills head and body only.
  let kept = null; // { id, job, head, actions, cancel, report, body, reportImg, recipe }

  function keptFor(job) {
    if (kept?.id !== job.id) {
      const recipe = h("pre", {});
      kept = {
        id: job.id, head: h("div", {}), actions: h("div", { class: "row" }), cancel: null, report: null,
        body: h("div", {}), recipe,
        reportImg: h("img", { class: "report", alt: `report of job ${job.id}: curves and confusion matrix`, hidden: true }),
      };
      fill(detail, kept.head, kept.actions, kept.body, kept.reportImg,
        h("details", {}, h("summary", {}, "Full recipe (params)"), recipe));
    }
    kept.job = job;
    return kept;
  }

  // The Cancel button stays one element from the job's first event to its end; the report links join it.
  function renderActions(k) {
    const job = k.job;
    const id = encodeURIComponent(job.id);
    if (FINISHED.has(job.status)) {
      k.cancel?.remove();
      k.cancel = null;
    } else if (!k.cancel) {
      k.cancel = changeButton("Cancel job", (e) => cancelJob(job.id, e.currentTarget), { id: "job-cancel" });
      k.actions.prepend(k.cancel);
    }
    if (k.cancel) k.cancel.querySelector("button").textContent = job.cancel_requested ? "Cancelling…" : "Cancel job";
    if (!k.report && (job.history.length > 0 || job.metrics)) {
      k.report = [
        h("a", { href: `/jobs/${id}/report.png`, target: "_blank", rel: "noopener", id: "job-report-link" }, "Open the report (PNG)"),
        h("button", { type: "button", onclick: () => {
          k.reportImg.hidden = !k.reportImg.hidden;
          if (!k.reportImg.hidden) k.reportImg.src = `/jobs/${id}/report.png?t=${k.job.history.length}`;
        } }, "Show the report here"),
      ];
      k.actions.append(...k.report);
    }
  }

  function renderDetail(job) {
    const k = keptFor(job);
    renderActions(k);
    k.recipe.textContent = JSON.stringify(job.params, null, 2);
    const p = job.progress;
    const losses = { "loss (epoch mean)": job.history.map((r) => [r.epoch, r.loss]) };
    const live = stepLosses.get(job.id);
    if (live?.length) losses["loss (steps, live)"] = live;
    const val = {};
    for (const m of SCALARS) {
      const points = job.history.filter((r) => r.val && typeof r.val[m] === "number").map((r) => [r.epoch, r.val[m]]);
      if (points.length) val[`validation ${m}`] = points;
    }
    fill(
      k.head,
      h("h2", {}, "Job ", h("code", {}, job.id), " ", h("span", { class: `badge ${job.status}`, id: "job-status" }, job.status)),
      h("p", { class: "muted" }, `dataset ${job.dataset}${job.validation !== null ? ` · validation ${job.validation}` : ""}`,
        job.test ? ` · test ${job.test}` : "", job.cv ? ` · ${job.cv.folds}-fold cross-validation` : "",
        ` · promote ${job.promote} · queued ${fmtTime(job.created_at)}`,
        job.queue_position ? ` · position ${job.queue_position} in the queue` : ""),
      p
        ? h("div", { class: "progress-line" },
            h("span", { id: "job-stage" }, `stage: ${p.stage}`),
            p.folds ? h("span", { id: "job-fold" }, `fold ${p.fold} of ${p.folds}`) : null,
            h("span", { id: "job-epoch" }, `epoch ${p.epoch} of ${p.epochs}`),
            p.steps ? h("span", {}, `step ${p.step} of ${p.steps}`) : null,
            h("span", {}, `loss ${fmt(p.loss)}`),
            h("span", { id: "job-eta" }, `ETA ${fmtSeconds(p.eta_s)}`),
            h("progress", { max: 1, value: p.fraction, "aria-label": `progress of the ${p.stage} stage` }))
        : h("p", { class: "muted" }, job.status === "queued" ? "waiting for the worker…" : "no progress reported"),
      job.error ? h("div", { class: "error", role: "alert", id: "job-error" }, h("strong", {}, `Why it ${job.status === "cancelled" ? "stopped" : "failed"}`), h("p", {}, job.error)) : null,
      job.model_version
        ? h("p", {}, "Trained version ", h("code", { id: "job-version" }, job.model_version), job.promoted ? " (promoted)" : " (not promoted)")
        : null,
      promotionText(job.metrics?.promotion),
    );
    fill(
      k.body,
      h("div", { class: "charts" }, lineChart(losses, { title: "Training loss" }), lineChart(val, { title: "Validation metrics", fromZero: true })),
      metricsSection(job.metrics),
    );
  }

  async function cancelJob(id, button) {
    await busy(button, async () => {
      try {
        renderDetail(await post(`/jobs/${encodeURIComponent(id)}/cancel`));
      } catch (err) {
        detail.prepend(errorBox(err, "Could not cancel"));
      }
    });
  }

  function row(job) {
    const p = job.progress;
    return h("tr", { dataset: { id: job.id, status: job.status }, class: job.id === selected ? "selected" : null },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => select(job.id, job), "aria-label": `show job ${job.id}` }, job.id.slice(0, 8))),
      h("td", {}, h("span", { class: `badge ${job.status}` }, job.status)),
      h("td", {}, job.dataset),
      h("td", {}, p ? `${p.stage}, epoch ${p.epoch}/${p.epochs}` : "–"),
      h("td", {}, job.model_version ? `${job.model_version}${job.promoted ? " ✓" : ""}` : "–"),
      h("td", {}, fmtTime(job.created_at)));
  }

  async function refresh() {
    try {
      const [{ jobs, counts }, { datasets }] = await Promise.all([get("/jobs?limit=50"), get("/datasets")]);
      fill(datalist, datasets.flatMap((d) => [h("option", { value: d.name }), ...d.splits.filter((s) => s.name).map((s) => h("option", { value: `${d.name}:${s.name}` }))]));
      const summary = Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(" · ");
      fill(list, jobs.length
        ? [h("p", { class: "muted" }, summary),
           h("div", { class: "scroll" }, h("table", { class: "jobs" },
             h("thead", {}, h("tr", {}, ["job", "status", "dataset", "progress", "version", "queued"].map((t) => h("th", { scope: "col" }, t)))),
             h("tbody", {}, jobs.map(row))))]
        : h("p", { class: "muted" }, "No jobs yet."));
      clearTimeout(listTimer);
      if (jobs.some((j) => !FINISHED.has(j.status)) && root.isConnected && !root.hidden) listTimer = setTimeout(refresh, 3000);
    } catch (err) {
      fill(list, errorBox(err, "Could not list the jobs"));
    }
  }

  fill(
    root,
    h("h1", { id: "h-jobs" }, "Jobs"),
    h("div", { class: "two" },
      h("div", { class: "card" }, h("h2", {}, "Start a job"), formArea),
      h("div", {}, h("h2", {}, "Recent jobs"), list, detail)),
  );
  return { refresh, select };
}
