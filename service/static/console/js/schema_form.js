// A form built from a JSON schema of /openapi.json (the job request): one input per field, defaults
// shown and filled in, nested objects as fieldsets; `read()` returns only what differs from the defaults.

import { h } from "./ui.js";

/** Follow `$ref`s into `components.schemas` of the OpenAPI document `doc`. */
export function resolve(doc, schema) {
  let current = schema || {};
  while (current.$ref) current = doc.components.schemas[current.$ref.split("/").pop()];
  return current;
}

/** The schema with `null` taken out of an `anyOf`: {schema, nullable, choices: [member schemas]}. */
function unwrap(doc, schema) {
  const resolved = resolve(doc, schema);
  if (!resolved.anyOf) return { schema: resolved, nullable: false, choices: [resolved] };
  const members = resolved.anyOf.map((m) => resolve(doc, m));
  const choices = members.filter((m) => m.type !== "null");
  const merged = choices.length === 1 ? { ...choices[0], ...resolved, anyOf: undefined } : resolved;
  return { schema: merged, nullable: choices.length < members.length, choices };
}

const idFor = (path) => `field-${path.join("-")}`;

function shownDefault(value) {
  if (value === undefined) return null;
  return value === null ? "none" : JSON.stringify(value);
}

/** One leaf input; returns {row, read, reset, input}. `read()` -> [changed, value]. */
function leaf(doc, name, spec, path, required, options) {
  const { schema, nullable, choices } = unwrap(doc, spec);
  const id = idFor(path);
  const def = schema.default;
  const help = [schema.description, shownDefault(def) !== null ? `default: ${shownDefault(def)}` : null];
  let input;
  let read;
  let reset;
  const type = choices.length === 1 ? choices[0].type : "mixed";
  const enumValues = choices.length === 1 ? (choices[0].enum ?? (choices[0].const !== undefined ? [choices[0].const] : null)) : null;
  if (enumValues) {
    input = h("select", { id, name: path.join(".") }, enumValues.map((v) => h("option", { value: v }, String(v))));
    reset = () => (input.value = def ?? enumValues[0]);
    read = () => [input.value !== (def ?? null), input.value];
  } else if (type === "boolean") {
    input = h("input", { id, type: "checkbox", name: path.join(".") });
    reset = () => (input.checked = Boolean(def));
    read = () => [input.checked !== Boolean(def), input.checked];
  } else if (type === "integer" || type === "number") {
    const s = choices[0];
    input = h("input", {
      id,
      type: "number",
      inputmode: type === "integer" ? "numeric" : "decimal",
      name: path.join("."),
      min: s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum : null),
      max: s.maximum ?? (s.exclusiveMaximum !== undefined ? s.exclusiveMaximum : null),
      step: type === "integer" ? 1 : "any",
      placeholder: def !== undefined && def !== null ? String(def) : "",
      required: required && def === undefined,
    });
    reset = () => (input.value = def !== undefined && def !== null ? String(def) : "");
    read = () => {
      if (input.value === "") return [required && def === undefined, null];
      const value = type === "integer" ? parseInt(input.value, 10) : parseFloat(input.value);
      return [value !== def, value];
    };
  } else {
    // Strings, and unions such as "a dataset reference or a fraction": typed text, numbers parsed.
    const numeric = choices.some((c) => c.type === "number" || c.type === "integer");
    const datasetLike = /dataset/i.test(`${name} ${schema.description || ""}`);
    input = h("input", {
      id,
      type: "text",
      name: path.join("."),
      list: datasetLike ? options.datalist : null,
      placeholder: nullable ? "leave empty for the default" : "",
      required: required && def === undefined,
      autocomplete: "off",
    });
    reset = () => (input.value = def !== undefined && def !== null ? String(def) : "");
    read = () => {
      const raw = input.value.trim();
      if (raw === "") return [false, null];
      const value = numeric && raw !== "" && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
      return [value !== def, value];
    };
  }
  reset();
  const error = h("span", { class: "field-error", id: `${id}-error`, role: "alert" });
  input.setAttribute("aria-describedby", `${id}-help ${id}-error`);
  const label = h("label", { for: id }, h("code", {}, name), required ? h("span", { class: "req" }, " (required)") : null);
  const row = h(
    "div",
    { class: type === "boolean" ? "field check" : "field", dataset: { field: path.join(".") } },
    type === "boolean" ? [input, label] : [label, input],
    h("small", { id: `${id}-help`, class: "muted" }, help.filter(Boolean).join(" · ")),
    error,
  );
  return { row, read, reset, input, error };
}

/** An object's fields; a nullable object gets a checkbox that turns it on (sent) or off (null). */
function group(doc, name, spec, path, options, fields) {
  const { schema, nullable } = unwrap(doc, spec);
  const objectSchema = schema.properties ? schema : resolve(doc, (schema.anyOf || []).find((m) => resolve(doc, m).properties));
  const required = new Set(objectSchema.required || []);
  const children = Object.entries(objectSchema.properties).map(([key, child]) =>
    node(doc, key, child, [...path, key], required.has(key), options, fields),
  );
  const body = h("div", { class: "grid" }, children.map((c) => c.row));
  const legend = path.length ? h("legend", {}, h("code", {}, name), schema.description ? ` · ${schema.description}` : "") : null;
  let toggle = null;
  if (nullable) {
    const id = `${idFor(path)}-on`;
    toggle = h("input", { type: "checkbox", id, onchange: () => (body.hidden = !toggle.checked) });
    body.hidden = true;
  }
  const row = h(
    "fieldset",
    { class: path.length ? "group" : "group root", dataset: { field: path.join(".") } },
    legend,
    toggle ? h("div", { class: "field check" }, toggle, h("label", { for: toggle.id }, `send ${name}`)) : null,
    body,
  );
  return {
    row,
    reset: () => {
      children.forEach((c) => c.reset());
      if (toggle) {
        toggle.checked = false;
        body.hidden = true;
      }
    },
    read: () => {
      if (toggle && !toggle.checked) return [false, null];
      const out = {};
      for (const [i, key] of Object.keys(objectSchema.properties).entries()) {
        const [changed, value] = children[i].read();
        if (changed) out[key] = value;
      }
      return [Boolean(toggle) || Object.keys(out).length > 0, out];
    },
  };
}

function node(doc, name, spec, path, required, options, fields) {
  const { schema } = unwrap(doc, spec);
  const isObject = schema.properties || (schema.anyOf || []).some((m) => resolve(doc, m).properties);
  const built = isObject ? group(doc, name, spec, path, options, fields) : leaf(doc, name, spec, path, required, options);
  if (!isObject) fields.set(path.join("."), built);
  return built;
}

/**
 * Build the form for `schema` (an object schema of `doc`). Returns {element, read, reset, showError}:
 * `read()` is the request body (changed values only), `showError(field, message)` marks one input.
 */
export function schemaForm(doc, schema, { datalist } = {}) {
  const fields = new Map();
  const root = group(doc, "job", schema, [], { datalist }, fields);
  return {
    element: root.row,
    read: () => root.read()[1],
    reset: () => {
      root.reset();
      clearErrors(fields);
    },
    showError: (field, message) => {
      clearErrors(fields);
      const target = fields.get(field);
      if (!target) return false;
      target.error.textContent = message;
      target.input.setAttribute("aria-invalid", "true");
      target.input.focus();
      return true;
    },
  };
}

function clearErrors(fields) {
  for (const f of fields.values()) {
    f.error.textContent = "";
    f.input.removeAttribute("aria-invalid");
  }
}
