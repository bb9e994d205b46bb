// Small DOM helpers shared by the views: an element builder, error boxes, formatting, the confirmation
// dialog, and the buttons that change something (disabled, with the reason shown, without a usable key).

/** h("p", {class: "x", onclick: fn}, "text", child) -> an element; null/false children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    // Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    else if (name === "style") for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, v);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** An alert box for an ApiError (or any Error); a 401 says so plainly. */
export function errorBox(err, title = "Request failed") {
  const unauthorized = err.status === 401;
  return h(
    "div",
    { class: "error", role: "alert", dataset: { code: err.code || "error", status: String(err.status || 0) } },
    h("strong", {}, unauthorized ? "401 Unauthorized" : title),
    h("p", {}, unauthorized ? `${err.message}. Enter a valid API key above.` : err.summary || err.message),
    err.field ? h("p", { class: "muted" }, "field: ", h("code", {}, err.field)) : null,
  );
}

export function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  return String(value);
}

export function fmtBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function fmtSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

export function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

/** Ask a yes/no question in the page's modal dialog; resolves to true when confirmed. */
export function confirmAction(title, text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// ---- buttons that change something ------------------------------------------------------------------

const mutating = new Set();
let denied = "checking whether this server needs an API key…";

/**
 * A button for a call that changes something: disabled, with `denied` shown next to it, while the
 * console has no usable key.
 */
export function changeButton(label, onClick, attrs = {}) {
  const reason = h("span", { class: "reason muted" });
  const button = h("button", { type: attrs.type || "button", ...attrs, onclick: onClick }, label);
  const wrap = h("span", { class: "change" }, button, reason);
  mutating.add({ button, reason });
  applyOne({ button, reason });
  return wrap;
}

function applyOne({ button, reason }) {
  button.disabled = Boolean(denied) || button.dataset.busy === "1";
  button.title = denied || "";
  reason.textContent = denied ? `Disabled: ${denied}` : "";
}

/** Set why changes are refused (null: allowed) and update every change button on the page. */
export function setDenied(why) {
  denied = why;
  for (const entry of mutating) {
    if (!entry.button.isConnected) mutating.delete(entry);
    else applyOne(entry);
  }
}

/** Run `work` with `button` disabled (and marked busy) until it settles. */
export async function busy(button, work) {
  button.dataset.busy = "1";
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.dataset.busy = "";
    button.disabled = Boolean(denied) && mutatingButton(button);
  }
}

function mutatingButton(button) {
  for (const entry of mutating) if (entry.button === button) return true;
  return false;
}
