// The public HTTP API of this service, as the console uses it: JSON calls, an upload with progress,
// the job event stream, and the API key (kept in sessionStorage only, sent as a Bearer token).

const KEY_STORAGE = "fusion-console.api-key";

/** An error answer of the API ({"error": {code, message, field}}) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }

  /** "401 unauthorized: missing or invalid API key" */
  get summary() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

const listeners = new Set();

/** Call `fn(error)` whenever a request is refused with 401 (the auth panel shows it). */
export function onUnauthorized(fn) {
  listeners.add(fn);
}

function errorFrom(status, body, statusText) {
  const detail = body && typeof body === "object" ? body.error : null;
  const error = detail
    ? new ApiError(status, detail.code, detail.message, detail.field)
    : new ApiError(status, statusText.toLowerCase().replace(/ /g, "_") || "http_error", statusText || "error");
  if (status === 401) listeners.forEach((fn) => fn(error));
  return error;
}

/** `method path` with an optional JSON body or FormData; resolves to the parsed JSON (null for 204). */
export async function call(method, path, { json, form } = {}) {
  const headers = authHeaders();
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (err) {
    throw new ApiError(0, "network_error", `the service did not answer (${err.message})`);
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw errorFrom(response.status, parsed, response.statusText);
  return parsed;
}

export const get = (path) => call("GET", path);
export const post = (path, options) => call("POST", path, options);

/** POST a FormData with XMLHttpRequest, reporting `onProgress(sentBytes, totalBytes)` while it uploads. */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      let parsed = null;
      try {
        parsed = JSON.parse(xhr.responseText);
      } catch {
        parsed = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(parsed);
      else reject(errorFrom(xhr.status, parsed, xhr.statusText));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network_error", "the upload was interrupted")));
    xhr.send(form);
  });
}

/**
 * Follow a job over `GET /jobs/{id}/events`: `onJob(job)` for every snapshot, `onEnd(job)` once it is
 * finished. Returns a function that stops following.
 */
export function followJob(id, onJob, onEnd) {
  const source = new EventSource(`/jobs/${encodeURIComponent(id)}/events`);
  source.addEventListener("progress", (event) => onJob(JSON.parse(event.data)));
  source.addEventListener("end", (event) => {
    source.close();
    const job = JSON.parse(event.data);
    onJob(job);
    onEnd(job);
  });
  return () => source.close();
}

/**
 * Whether changes are allowed with the key at hand: "open" (the server needs no key), "accepted",
 * "missing" (a key is needed) or "rejected". Asks the public API to cancel a job that cannot exist: the
 * key is checked before the job is looked up, so 401 means the key is needed or wrong and 404 that it
 * passed; nothing is changed either way.
 */
export async function checkKey() {
  try {
    await post("/jobs/console-key-check/cancel");
  } catch (err) {
    if (err.status === 404) return getKey() ? "accepted" : "open";
    if (err.status === 401) return getKey() ? "rejected" : "missing";
    throw err;
  }
  return getKey() ? "accepted" : "open";
}
