// The console's entry point: loads /openapi.json, builds the views, switches between them by the URL's
// hash (#try, #datasets, #jobs, #jobs/<id>, #models), and keeps the API-key panel in step.

import { checkKey, get, getKey, onUnauthorized, setKey } from "./api.js";
import { errorBox, fill, h, setDenied } from "./ui.js";
import { datasetsView } from "./views/datasets.js";
import { jobsView } from "./views/jobs.js";
import { modelsView } from "./views/models.js";
import { tryView } from "./views/try.js";

const AUTH_TEXT = {
  open: ["This server accepts changes without a key.", null],
  accepted: ["Key accepted: changes are allowed.", null],
  missing: ["Read-only: this server needs an API key for changes.", "this server needs an API key: enter it above"],
  rejected: ["401 Unauthorized: the server refused this key.", "the API key was refused (401): enter a valid one above"],
};

async function refreshAuth() {
  const status = document.getElementById("auth-status");
  let state;
  try {
    state = await checkKey();
  } catch (err) {
    status.textContent = `Could not check the key: ${err.summary}`;
    setDenied(`could not check the API key (${err.summary})`);
    return;
  }
  const [text, denied] = AUTH_TEXT[state];
  status.textContent = text;
  status.dataset.state = state;
  setDenied(denied);
}

function setUpAuth() {
  const input = document.getElementById("api-key");
  input.value = getKey();
  document.getElementById("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    refreshAuth();
  });
  document.getElementById("auth-forget").addEventListener("click", () => {
    input.value = "";
    setKey("");
    refreshAuth();
  });
  onUnauthorized(() => {
    const [text, denied] = getKey() ? AUTH_TEXT.rejected : AUTH_TEXT.missing;
    const status = document.getElementById("auth-status");
    status.textContent = text;
    status.dataset.state = getKey() ? "rejected" : "missing";
    setDenied(denied);
  });
}

async function refreshServerStatus() {
  const el = document.getElementById("server-status");
  try {
    const ready = await get("/health/ready");
    el.textContent = `ready · serving ${ready.model_version} on ${ready.device}`;
  } catch (err) {
    el.textContent = err.status ? `not ready: ${err.message}` : "the service does not answer";
  }
}

async function start() {
  setUpAuth();
  refreshAuth();
  refreshServerStatus();
  let openapi;
  try {
    openapi = await get("/openapi.json");
  } catch (err) {
    fill(document.getElementById("main"), errorBox(err, "Could not load /openapi.json"));
    return;
  }
  const panels = Object.fromEntries([...document.querySelectorAll("[data-view-panel]")].map((p) => [p.dataset.viewPanel, p]));
  const views = {};
  const refreshAll = () => {
    refreshServerStatus();
    Object.values(views).forEach((v) => v.refresh());
  };
  views.try = tryView(panels.try);
  views.datasets = datasetsView(panels.datasets, { onChange: refreshAll, openapi });
  views.jobs = jobsView(panels.jobs, { onChange: refreshAll, openapi });
  views.models = modelsView(panels.models, { onChange: refreshAll });

  function show() {
    const [name, arg] = (location.hash.slice(1) || "try").split("/");
    const view = panels[name] ? name : "try";
    for (const [key, panel] of Object.entries(panels)) panel.hidden = key !== view;
    for (const link of document.querySelectorAll("[data-view]")) {
      if (link.dataset.view === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    views[view].refresh();
    if (view === "jobs" && arg) views.jobs.select(decodeURIComponent(arg));
    document.title = `${document.querySelector(`[data-view="${view}"]`).textContent} · Fusion console`;
  }
  window.addEventListener("hashchange", () => {
    show();
    document.getElementById("main").focus();
  });
  show();
  document.body.dataset.ready = "1";
}

start();
