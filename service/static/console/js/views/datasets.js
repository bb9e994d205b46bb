// Datasets: upload a zip (with upload progress), list them with sample counts and label distributions,
// and show a refused upload's problems next to the field they belong to.

import { call, get, upload } from "../api.js";
import { bars } from "../charts.js";
import { busy, changeButton, confirmAction, errorBox, fill, fmtBytes, fmtTime, h } from "../ui.js";

/** "train: invalid dataset, 2 problems: missing_image x1 (...), duplicate x1 (...)" -> list items. */
function problemItems(message) {
  const match = /^(?:(\w+): )?invalid dataset, \d+ problems?: (.*)$/s.exec(message);
  if (!match) return null;
  const [, split, rest] = match;
  const items = [];
  const kind = /(\w+) x(\d+) \(/g;
  const starts = [...rest.matchAll(kind)];
  starts.forEach((m, i) => {
    const end = i + 1 < starts.length ? starts[i + 1].index - 2 : rest.length;
    const examples = rest.slice(m.index + m[0].length, end).replace(/\)$/, "");
    items.push(h("li", {}, h("code", {}, m[1]), ` × ${m[2]}: ${examples}`));
  });
  return { split, items };
}

export function datasetsView(root, { onChange, openapi }) {
  const nameInput = h("input", { id: "ds-name", name: "name", required: true, autocomplete: "off", "aria-describedby": "ds-name-help ds-name-error" });
  const fileInput = h("input", { id: "ds-file", name: "file", type: "file", accept: ".zip,application/zip", required: true, "aria-describedby": "ds-file-help ds-file-error" });
  const skip = h("input", { id: "ds-skip", name: "skip_invalid", type: "checkbox" });
  const errors = { name: h("span", { class: "field-error", id: "ds-name-error", role: "alert" }), file: h("span", { class: "field-error", id: "ds-file-error", role: "alert" }) };
  const progress = h("progress", { id: "ds-progress", max: 100, value: 0, hidden: true });
  const progressText = h("span", { id: "ds-progress-text", class: "muted", "aria-live": "polite" });
  const outcome = h("div", { id: "ds-outcome", "aria-live": "polite" });
  const list = h("div", { id: "ds-list" });

  const uploadSchema = openapi?.paths?.["/datasets"]?.post?.requestBody?.content?.["multipart/form-data"]?.schema;
  // Checked here rather than with the input's pattern attribute: browsers compile that with the `v` flag,
  // under which a schema's plain regular expression (e.g. "[a-z_-]") may not be valid.
  const namePattern = uploadSchema?.properties?.name?.pattern;
  const nameProblem = (name) => {
    if (!name) return "name: required";
    if (namePattern && !new RegExp(namePattern).test(name)) return `name: must match ${namePattern}`;
    return null;
  };

  function clearErrors() {
    for (const [field, el] of Object.entries(errors)) {
      el.textContent = "";
      (field === "name" ? nameInput : fileInput).removeAttribute("aria-invalid");
    }
    fill(outcome);
  }

  function showRefusal(err) {
    const input = err.field === "name" ? nameInput : err.field === "file" ? fileInput : null;
    const parsed = problemItems(err.message);
    const box = errorBox(err, `Upload refused (${err.status} ${err.code})`);
    if (parsed) box.append(h("p", {}, parsed.split ? `Problems in split ${parsed.split}:` : "Problems:"), h("ul", { class: "problems" }, parsed.items));
    if (input) {
      errors[err.field].textContent = parsed ? `${err.field}: the dataset has invalid rows (listed below)` : `${err.field}: ${err.message}`;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
    fill(outcome, box);
  }

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    const problem = nameProblem(nameInput.value);
    if (problem) {
      errors.name.textContent = problem;
      nameInput.setAttribute("aria-invalid", "true");
      nameInput.focus();
      return;
    }
    if (!fileInput.files.length) {
      errors.file.textContent = "file: choose a zip file";
      fileInput.setAttribute("aria-invalid", "true");
      fileInput.focus();
      return;
    }
    const form = new FormData();
    form.append("name", nameInput.value);
    if (skip.checked) form.append("skip_invalid", "true");
    form.append("file", fileInput.files[0]);
    progress.hidden = false;
    progress.value = 0;
    let uploaded = 0;
    await busy(uploadButton.querySelector("button"), async () => {
      try {
        const info = await upload("/datasets", form, (sent, total) => {
          progress.value = Math.round((100 * sent) / total);
          uploaded = sent;
          progressText.textContent = sent < total ? `uploading ${fmtBytes(sent)} of ${fmtBytes(total)}` : `uploaded ${fmtBytes(total)}; checking every image…`;
        });
        progressText.textContent = "";
        fill(outcome, h("p", { class: "ok", role: "status" }, `Dataset ${info.name} added: ${info.samples} samples (uploaded ${fmtBytes(uploaded)}).`));
        nameInput.value = "";
        fileInput.value = "";
        await refresh();
        onChange();
      } catch (err) {
        progressText.textContent = "";
        showRefusal(err);
      } finally {
        progress.hidden = true;
      }
    });
  }

  const uploadButton = changeButton("Upload", null, { type: "submit", class: "primary", id: "ds-upload" });
  fill(
    root,
    h("h1", { id: "h-datasets" }, "Datasets"),
    h("form", { class: "stack card", onsubmit: submit, novalidate: true, "aria-label": "Upload a dataset" },
      h("h2", {}, "Upload a zip"),
      h("div", { class: "field" }, h("label", { for: "ds-name" }, "Name"), nameInput,
        h("small", { id: "ds-name-help", class: "muted" }, "usable later as name or name:split"), errors.name),
      h("div", { class: "field" }, h("label", { for: "ds-file" }, "Zip file"), fileInput,
        h("small", { id: "ds-file-help", class: "muted" }, "a manifest (train.jsonl / .csv: image, text, label; optionally dev and test) with its images, or label folders of <name>.jpg + <name>.txt"), errors.file),
      h("div", { class: "field check" }, skip, h("label", { for: "ds-skip" }, "drop invalid rows instead of refusing the upload")),
      h("div", { class: "row" }, uploadButton, progress, progressText),
      outcome),
    h("h2", {}, "In the data directory"),
    list,
  );

  async function remove(name, button) {
    if (!(await confirmAction("Delete dataset", `Delete dataset ${name} and its files? Jobs that used it keep their models.`, "Delete"))) return;
    await busy(button, async () => {
      try {
        await call("DELETE", `/datasets/${encodeURIComponent(name)}`);
        await refresh();
        onChange();
      } catch (err) {
        fill(outcome, errorBox(err, `Could not delete ${name}`));
      }
    });
  }

  function card(ds) {
    const del = changeButton("Delete", (e) => remove(ds.name, e.currentTarget), { "aria-label": `Delete dataset ${ds.name}` });
    return h(
      "article",
      { class: "card dataset", dataset: { name: ds.name } },
      h("h3", {}, ds.name),
      h("p", { class: "muted" }, `${ds.format} · ${fmtBytes(ds.size_bytes)} · added ${fmtTime(ds.created_at)}`),
      h("p", {}, h("strong", { class: "samples" }, String(ds.samples)), ` samples${ds.default_split ? ` in ${ds.default_split}` : ""}`),
      bars(ds.label_counts, { label: `label distribution of ${ds.name}` }),
      h("table", { class: "splits" },
        h("thead", {}, h("tr", {}, ["split", "samples", "invalid rows"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, ds.splits.map((sp) => h("tr", {},
          h("td", {}, sp.name ? `${ds.name}:${sp.name}` : ds.name),
          h("td", {}, String(sp.samples)),
          h("td", {}, sp.skipped ? `${sp.skipped} (${Object.entries(sp.problem_counts).map(([k, n]) => `${k} ×${n}`).join(", ")})` : "0"))))),
      ds.error ? h("p", { class: "warn" }, ds.error) : null,
      h("div", { class: "row" }, del),
    );
  }

  async function refresh() {
    try {
      const { datasets } = await get("/datasets");
      fill(list, datasets.length ? h("div", { class: "cards" }, datasets.map(card)) : h("p", { class: "muted" }, "No datasets yet: upload a zip above."));
      return datasets;
    } catch (err) {
      fill(list, errorBox(err, "Could not list the datasets"));
      return [];
    }
  }

  return { refresh };
}
