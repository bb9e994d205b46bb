// Try it: a photo and a caption in, the label, the probabilities and, on request, the explanation out.

import { ApiError, get, post } from "../api.js";
import { probabilityBars } from "../charts.js";
import { busy, errorBox, fill, h } from "../ui.js";

export function tryView(root) {
  let file = null;
  let previewUrl = null;
  let model = null;

  const fileInput = h("input", { id: "try-image", type: "file", accept: "image/*", class: "visually-hidden" });
  const preview = h("img", { class: "preview", alt: "", hidden: true });
  const dropText = h("span", {}, "Drop a photo here, or press to choose one");
  const clearImage = h("button", { type: "button", hidden: true, onclick: () => setFile(null) }, "Remove photo");
  const drop = h("label", { for: "try-image", class: "drop", tabindex: "0" }, preview, dropText);
  const text = h("textarea", { id: "try-text", rows: 3, placeholder: "what the photo's caption or tweet says" });
  const modelInfo = h("div", { class: "muted", id: "try-model" }, "looking for the active model…");
  const result = h("div", { id: "try-result", "aria-live": "polite" });
  const explanation = h("div", { id: "try-explanation", "aria-live": "polite" });
  const predictButton = h("button", { type: "submit", class: "primary" }, "Predict");
  const explainButton = h("button", { type: "button", disabled: true, onclick: () => run(true) }, "Explain");

  function setFile(next) {
    file = next;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = file ? URL.createObjectURL(file) : null;
    preview.hidden = !file;
    clearImage.hidden = !file;
    if (previewUrl) preview.src = previewUrl;
    else preview.removeAttribute("src");
    preview.alt = file ? `chosen photo ${file.name}` : "";
    dropText.textContent = file ? `${file.name} · drop or press to change` : "Drop a photo here, or press to choose one";
    if (!file) fileInput.value = "";
  }

  fileInput.addEventListener("change", () => setFile(fileInput.files[0] || null));
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      fileInput.click();
    }
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const dropped = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
    if (dropped) setFile(dropped);
  });

  function describeModel() {
    if (!model) return "No model is active yet: train one in Jobs, or activate one in Models.";
    const inputs = model.modalities.join(" + ") || "unknown inputs";
    const missing = model.supports_missing_modality ? "either input may be left out" : "it needs both inputs";
    return `Active model ${model.version} (${model.image_encoder} + ${model.text_encoder}, ${model.fusion} head): ${inputs}; ${missing}.`;
  }

  function checkInputs() {
    const needs = model && !model.supports_missing_modality ? model.modalities : [];
    if (!file && !text.value.trim()) return "Choose a photo or type a caption (or both).";
    if (needs.includes("image") && !file) return `The active model ${model.version} needs a photo too.`;
    if (needs.includes("text") && !text.value.trim()) return `The active model ${model.version} needs a caption too.`;
    return null;
  }

  async function run(explain) {
    const problem = checkInputs();
    if (problem) {
      fill(result, errorBox(new ApiError(0, "missing_input", problem), "Missing input"));
      return;
    }
    const form = new FormData();
    if (file) form.append("image", file, file.name);
    if (text.value.trim()) form.append("text", text.value);
    await busy(explain ? explainButton : predictButton, async () => {
      try {
        const answer = await post(explain ? "/predict?explain=true" : "/predict", { form });
        showAnswer(answer, explain);
        explainButton.disabled = false;
      } catch (err) {
        fill(explain ? explanation : result, errorBox(err, "Prediction failed"));
      }
    });
  }

  function showAnswer(answer, explain) {
    fill(
      result,
      h("p", { class: "label-line" }, "Label: ", h("strong", { id: "try-label" }, answer.label)),
      h("p", { class: "muted" }, "answered by model ", h("code", { id: "try-version" }, answer.model_version),
        ` · inputs used: ${answer.modalities_used.join(" + ")}`),
      probabilityBars(answer.probabilities, "class probabilities"),
    );
    if (!explain) {
      fill(explanation);
      return;
    }
    const part = (title, prediction) =>
      h("div", { class: "card" }, h("h3", {}, title),
        prediction
          ? [h("p", {}, "Label: ", h("strong", {}, prediction.label)), probabilityBars(prediction.probabilities, title)]
          : h("p", { class: "muted" }, "not available: that input was not given or the model has no encoder for it"));
    fill(
      explanation,
      h("h3", {}, "Explanation"),
      h("div", { class: "cards" },
        part("Image only", answer.image_only),
        part("Text only", answer.text_only),
        h("div", { class: "card" }, h("h3", {}, "Gate weights"),
          answer.gate
            ? [h("p", { class: "muted" }, "how much the fusion head relied on each input"), probabilityBars(answer.gate, "gate weights")]
            : h("p", { class: "muted" }, "this model's fusion head has no gate"))),
    );
  }

  const form = h(
    "form",
    { class: "stack", onsubmit: (e) => { e.preventDefault(); run(false); } },
    h("div", { class: "field" }, h("span", { class: "label" }, "Photo"), fileInput, drop, clearImage),
    h("div", { class: "field" }, h("label", { for: "try-text" }, "Caption"), text),
    h("div", { class: "row" }, predictButton, explainButton),
  );
  fill(
    root,
    h("h1", { id: "h-try" }, "Try it"),
    modelInfo,
    h("div", { class: "two" }, form, h("div", {}, result, explanation)),
  );

  return {
    async refresh() {
      try {
        model = await get("/models/active");
        modelInfo.textContent = describeModel();
      } catch (err) {
        model = null;
        if (err.status === 404) modelInfo.textContent = describeModel();
        else fill(modelInfo, errorBox(err, "Could not read the active model"));
      }
    },
  };
}
