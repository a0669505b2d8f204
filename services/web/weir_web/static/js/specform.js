// What the submit page and the schedule form share: a flow spec pasted or uploaded (YAML or
// JSON), read in the browser to find its declared params, and a field per param.

import { h, replace } from "./dom.js";
import { CORE_SCHEMA, load } from "../vendor/js-yaml.js";

/** Largest spec file the page reads (the server's own body limit is what counts). */
const FILE_MAX = 4 * 1024 * 1024;

/**
 * The spec in `text` as plain values, or why it cannot be read. JSON first; then YAML with
 * the core schema. Only used to find the params to ask for: the text itself is what is sent
 * (the server reads it as `weir submit` reads a file, YAML 1.1).
 * @returns {{spec: any, error: string}}
 */
export function readSpec(text) {
  if (!text.trim()) return { spec: null, error: "" };
  try {
    return { spec: JSON.parse(text), error: "" };
  } catch {
    /* not JSON: YAML */
  }
  try {
    return { spec: load(text, { schema: CORE_SCHEMA, json: true }), error: "" };
  } catch (error) {
    return { spec: null, error: `not valid YAML or JSON: ${error.reason || error.message}${error.mark ? ` (line ${error.mark.line + 1}, column ${error.mark.column + 1})` : ""}` };
  }
}

/** The type a bare default declares (weir_proto.params.type_of). */
function typeOf(value) {
  if (typeof value === "boolean") return "bool";
  if (typeof value === "number") return Number.isInteger(value) ? "int" : "float";
  if (typeof value === "string") return "string";
  return "json";
}

/** A param's value as a field shows it (the API reads a string as the declared type). */
export const shown = (value) => (value === undefined || value === null ? "" : typeof value === "string" ? value : JSON.stringify(value));

/**
 * The params a spec declares: `[{name, type, default, description, required}]` (a bare value
 * is a default of its own type).
 */
export function declaredParams(spec) {
  const params = spec && typeof spec === "object" && !Array.isArray(spec) ? spec.params : null;
  if (!params || typeof params !== "object" || Array.isArray(params)) return [];
  return Object.entries(params).map(([name, p]) => {
    // As weir_proto.validation reads it: a mapping is a declaration, anything else a default.
    const declared = p !== null && typeof p === "object" && !Array.isArray(p);
    if (!declared) return { name, type: typeOf(p), default: p ?? undefined, description: "", required: p === null };
    const hasDefault = p.default !== undefined && p.default !== null;
    return { name, type: String(p.type || "string"), default: hasDefault ? p.default : undefined, description: p.description ? String(p.description) : "", required: !hasDefault };
  });
}

/** An input for a param of `type`: the browser checks a number or a bool as it is typed. */
function paramInput(param, value) {
  const name = `param-${param.name}`;
  if (param.type === "bool") {
    const select = h("select", { name }, h("option", { value: "" }, param.required ? "choose" : `default (${shown(param.default)})`), h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    select.value = value;
    return select;
  }
  const attrs = { name, value, placeholder: param.required ? "required" : `default: ${shown(param.default)}` };
  if (param.type === "int") return h("input", { ...attrs, type: "number", step: 1 });
  if (param.type === "float") return h("input", { ...attrs, type: "number", step: "any" });
  if (param.type === "json") return h("textarea", { name, placeholder: attrs.placeholder, rows: 2, class: "mono" }, value);
  return h("input", attrs);
}

/**
 * One field per declared param in `box`, keeping what was typed in a field of the same name
 * across a change of the spec. Returns `values()`: the fields filled in, as typed (strings).
 */
export function paramFields(box, declared, before = {}) {
  const inputs = declared.map((param) => [param, paramInput(param, before[param.name] || "")]);
  replace(
    box,
    declared.length ? h("h2", {}, "Parameters") : "",
    inputs.map(([param, input]) => h(
      "label",
      { class: "param", dataset: { param: param.name } },
      h("span", {}, h("code", {}, param.name), ` ${param.type}`, param.required ? " · required" : ` · default ${shown(param.default)}`),
      input,
      param.description ? h("small", { class: "muted" }, param.description) : "",
    )),
  );
  return () => Object.fromEntries(inputs.filter(([, input]) => input.value !== "").map(([param, input]) => [param.name, input.value]));
}

/** A textarea for the spec and a file input that fills it; `onChange(text)` hears both. */
export function specInput(onChange, rows = 14) {
  const text = h("textarea", { name: "spec", rows, class: "mono spec", spellcheck: "false", placeholder: "name: etl\nparams:\n  date: {type: string, description: the day to load}\ntasks:\n  - name: extract\n    cmd: [echo, \"{{ params.date }}\"]" });
  const note = h("p", { class: "muted", "data-spec-note": "" });
  const file = h("input", { type: "file", name: "spec-file", accept: ".yaml,.yml,.json,application/json,application/yaml,text/yaml" });
  text.addEventListener("input", () => onChange(text.value));
  file.addEventListener("change", async () => {
    const chosen = file.files[0];
    if (!chosen) return;
    if (chosen.size > FILE_MAX) {
      note.textContent = `${chosen.name} is ${chosen.size.toLocaleString()} bytes; at most ${FILE_MAX.toLocaleString()} are read.`;
      return;
    }
    text.value = await chosen.text();
    onChange(text.value);
  });
  const element = [
    h("label", {}, h("span", {}, "Flow spec (YAML or JSON)"), text),
    h("label", { class: "inline" }, h("span", {}, "or from a file "), file),
    note,
  ];
  return { element, text, note };
}

/** Reading the spec again waits until typing pauses this long. */
const READ_AFTER_MS = 250;

/**
 * A spec input (`specInput`) with a field per param the spec declares in `paramsBox`, read
 * again once typing pauses (what was typed in the fields is kept). `values()` gives the
 * params typed in; `flush()` reads a spec changed just now, before its params were read
 * (call it before sending); `reset()` empties the fields. `cannotRead` begins the note shown
 * when the page cannot read the spec.
 */
export function specWithParams(paramsBox, rows, cannotRead) {
  let values = () => ({});
  let timer = null;
  const read = () => {
    clearTimeout(timer);
    timer = null;
    const found = readSpec(spec.text.value);
    spec.note.textContent = found.error ? `${cannotRead}: ${found.error}` : "";
    values = paramFields(paramsBox, declaredParams(found.spec), values());
  };
  const spec = specInput(() => {
    clearTimeout(timer);
    timer = setTimeout(read, READ_AFTER_MS);
  }, rows);
  return {
    ...spec,
    values: () => values(),
    flush: () => {
      if (timer !== null) read();
    },
    reset: () => {
      clearTimeout(timer);
      timer = null;
      replace(paramsBox);
      values = () => ({});
    },
  };
}
