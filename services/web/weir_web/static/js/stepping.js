// Stepping in on a flow (operators): Pause / Resume and Update (before the flow starts) on the
// flow page, Retry and Retry with downstream on the task page. Each asks first and sends the
// CSRF token (api.js); what the scheduler refuses is shown as text, with every problem.

import { call, canWrite, seg } from "./api.js";
import { h, replace } from "./dom.js";
import { inputToIso, isoToInput, zone } from "./time.js";
import { confirmAction, notify, showError } from "./ui.js";

const PAUSABLE = new Set(["scheduled", "pending", "running"]);
const UPDATABLE = new Set(["scheduled", "pending"]);
const RETRYABLE = new Set(["failed", "succeeded"]);

const button = (action, label, onclick) => h("button", { type: "button", "data-action": action, onclick }, label);

async function step(flowId, verb, body, title, detail) {
  if (!(await confirmAction(title, detail, title))) return null;
  try {
    return await call(`/flows/${seg(flowId)}/${verb}`, { method: "POST", body });
  } catch (error) {
    showError(error, title);
    return null;
  }
}

/**
 * The flow page's Pause, Resume and Update buttons for a flow in `status` (none for a
 * viewer). `current()` gives what the update form starts from.
 */
export function flowStepping(flowId, name, status, current) {
  if (!canWrite()) return [];
  const pause = async () => {
    const done = await step(flowId, "pause", { reason: "paused from the web UI" }, "Pause", `Pause ${name} (${flowId})? Nothing new starts until it is resumed; running attempts finish.`);
    if (done) notify(done.already ? "The flow was already paused." : "Paused.");
  };
  const resume = async () => {
    const done = await step(flowId, "resume", {}, "Resume", `Resume ${name} (${flowId})? What waited is handed out again.`);
    if (done) notify(`Resumed (${done.status}).`);
  };
  return [
    PAUSABLE.has(status) ? button("pause", "Pause", pause) : "",
    status === "paused" ? button("resume", "Resume", resume) : "",
    UPDATABLE.has(status) ? button("update", "Update", () => updateDialog(flowId, name, current())) : "",
  ];
}

/** The task page's Retry buttons for a task in `status` (also an instance `NAME[i]`: it runs
 * again alone, and its mapped task waits for it again without reading its list again). */
export function taskStepping(flowId, task, status, onDone) {
  if (!canWrite() || !RETRYABLE.has(status)) return [];
  const retry = async (downstream) => {
    const detail = downstream
      ? `Run ${task} and every task after it again, inside this flow; mapped tasks after it read their lists again and run new instances.`
      : `Run ${task} again inside this flow; tasks after it that were skipped or cancelled are planned again.`;
    const done = await step(flowId, "retry", { task, downstream }, downstream ? "Retry with downstream" : "Retry", detail);
    if (!done) return;
    notify(`Retrying ${listed(done.tasks)} (flow ${done.status}).`);
    onDone();
  };
  return [
    button("retry", "Retry", () => retry(false)),
    button("retry-downstream", "Retry with downstream", () => retry(true)),
  ];
}

/** Task names for a notice: the first ten, then how many more (a mapped task retried may
 * run thousands of instances again). */
const listed = (names) => (names.length > 10 ? `${names.slice(0, 10).join(", ")} and ${(names.length - 10).toLocaleString()} more` : names.join(", "));

/** A param's value as the form shows it (and the API reads it back: strings are typed). */
const shown = (value) => (value === undefined || value === null ? "" : typeof value === "string" ? value : JSON.stringify(value));

/**
 * The update form of a flow that has not started: priority, start, params, tags and metadata.
 * Only the fields changed are sent; a refusal (409, 422 with every problem) stays in the form
 * as text.
 * @param {{priority: number|null, startAt: string|null, params: Record<string, {type: string, value: any}>, tags: string[], metadata: Record<string, any>}} now
 */
function updateDialog(flowId, name, now) {
  const field = (label, input) => h("label", {}, h("span", {}, label), input);
  const was = now.priority === null ? "" : String(now.priority);
  const priority = h("input", { type: "number", step: 1, name: "priority", value: was, placeholder: "as it is" });
  const startAt = h("input", { type: "datetime-local", name: "scheduled_at", value: isoToInput(now.startAt) });
  const startNow = h("input", { type: "checkbox", name: "start_now" });
  const params = Object.entries(now.params).map(([param, p]) => [param, p, h("input", { name: `param-${param}`, value: shown(p.value) })]);
  const tags = h("input", { name: "tags", value: now.tags.join(", "), placeholder: "nightly, prod" });
  const metadata = metadataField(now.metadata || {});
  const problems = h("div", { class: "error", role: "alert", "data-update-error": "" });
  const form = h(
    "form",
    { class: "update" },
    h("h2", {}, `Update ${name}`),
    h("p", { class: "muted" }, "Before the flow starts. Fields left as they are stay as they are."),
    field("Priority (lower runs first)", priority),
    field(`Start at (${zone() === "utc" ? "UTC" : "local time"})`, startAt),
    h("label", { class: "inline" }, startNow, " start now"),
    params.map(([param, p, input]) => field(p.type ? `${param} (${p.type})` : param, input)),
    field("Tags (comma-separated)", tags),
    field("Metadata (key=value, one a line; replaces the old)", metadata.input),
    problems,
  );
  const dialog = h("dialog", { class: "confirm" }, form);
  const close = () => {
    dialog.close();
    dialog.remove();
  };
  const body = () => {
    const out = {};
    if (priority.value !== was && priority.value !== "") out.priority = /^-?\d+$/.test(priority.value) ? Number(priority.value) : priority.value;
    if (startNow.checked) out.start_now = true;
    else if (startAt.value && startAt.value !== isoToInput(now.startAt)) out.scheduled_at = inputToIso(startAt.value) || startAt.value;
    const changed = params.filter(([, p, input]) => input.value !== shown(p.value));
    if (changed.length) out.params = Object.fromEntries(changed.map(([param, , input]) => [param, input.value]));
    const newTags = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    if (newTags.join(",") !== now.tags.join(",")) out.tags = newTags;
    if (metadata.changed()) out.metadata = metadata.value();
    return out;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const bad = metadata.problems();
    if (bad.length) {
      replace(problems, h("p", {}, "The metadata cannot be read"), h("ul", {}, bad.map((p) => h("li", {}, p))));
      return;
    }
    try {
      const done = await call(`/flows/${seg(flowId)}`, { method: "PATCH", body: body() });
      close();
      notify(`Updated ${done.tasks.join(", ")} (flow ${done.status}).`);
    } catch (error) {
      replace(problems, h("p", {}, error.message), h("ul", {}, (error.problems || []).map((p) => h("li", {}, `${p.path || ""} ${p.message}`.trim()))));
    }
  });
  form.append(h(
    "div",
    { class: "buttons" },
    h("button", { type: "button", onclick: close }, "Keep"),
    h("button", { type: "submit", "data-confirm": "" }, "Update"),
  ));
  dialog.addEventListener("cancel", close);
  document.body.append(dialog);
  dialog.showModal();
}

/**
 * The metadata as `key=value` lines: a value is sent as a string, except one left as it was,
 * which keeps its JSON type. `problems()` names each line that is not `key=value`.
 */
function metadataField(was) {
  const lines = Object.entries(was).map(([k, v]) => `${k}=${shown(v)}`).join("\n");
  const input = h("textarea", { name: "metadata", rows: 3, placeholder: "owner=data-team" }, lines);
  const entries = () => input.value.split("\n").map((line) => line.trim()).filter(Boolean);
  return {
    input,
    changed: () => input.value.trim() !== lines.trim(),
    problems: () => entries().filter((line) => !/^[^=]+=/.test(line)).map((line) => `"${line}": write key=value`),
    value: () => Object.fromEntries(entries().map((line) => {
      const at = line.indexOf("=");
      const [key, text] = [line.slice(0, at).trim(), line.slice(at + 1).trim()];
      return [key, key in was && shown(was[key]) === text ? was[key] : text];
    })),
  };
}
