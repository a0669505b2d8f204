// One flow: its graph coloured live by status, the attempt Gantt, the event log (JSON
// download), artifacts, and cancel / rerun / rerun-failed with confirmation.

import { API, call, canWrite, seg } from "./api.js";
import { download, h, perFrame, replace } from "./dom.js";
import { graph, SVG_MAX_TASKS } from "./dag.js";
import { gantt } from "./gantt.js";
import { ACTIVE_FLOW, Attempts, flowStatusAfter, taskStatusAfter, TERMINAL_FLOW_EVENTS } from "./model.js";
import { formatTime } from "./time.js";
import { badge, confirmAction, facts, link, notify, showError } from "./ui.js";

const EVENTS_SHOWN = 500;

export async function flowView(root, [flowId], { signal, navigate }) {
  let view;
  try {
    view = await call(`/flows/${seg(flowId)}`, { signal });
  } catch (error) {
    if (error.name === "AbortError") return;
    root.append(h("h1", {}, "Flow"), h("p", { class: "error" }, error.message));
    return;
  }
  const statuses = new Map(view.tasks.map((t) => [t.name, t.status]));
  const statusOf = (name) => statuses.get(name) || "pending";
  let flowStatus = view.status;
  const attempts = new Attempts();
  const events = [];
  const openTask = (name) => navigate(`/flows/${seg(flowId)}/tasks/${seg(name)}`);

  // Header and actions ----------------------------------------------------------------
  const statusBadge = h("span", {}, badge(flowStatus));
  const counts = h("p", { class: "counts" });
  const actions = h("div", { class: "actions" });
  const act = async (verb, body, title, detail) => {
    if (!(await confirmAction(title, detail, title))) return;
    try {
      const result = await call(`/flows/${seg(flowId)}/${verb}`, { method: "POST", body });
      if (verb === "rerun") {
        notify(`Rerun started: ${result.flow_id}`);
        navigate(`/flows/${seg(result.flow_id)}`);
      } else notify(`Cancel requested (${result.status})`);
    } catch (error) {
      showError(error, verb);
    }
  };
  const renderActions = () => {
    if (!canWrite()) return;
    const active = ACTIVE_FLOW.has(flowStatus);
    replace(
      actions,
      active ? h("button", { type: "button", class: "danger", "data-action": "cancel", onclick: () => act("cancel", { reason: "cancelled from the web UI" }, "Cancel flow", `Cancel ${view.name} (${flowId})? Running attempts are killed.`) }, "Cancel") : "",
      !active ? h("button", { type: "button", "data-action": "rerun", onclick: () => act("rerun", { failed_only: false }, "Rerun flow", `Run every task of ${view.name} again, as a new flow.`) }, "Rerun") : "",
      !active && flowStatus !== "succeeded" ? h("button", { type: "button", "data-action": "rerun-failed", onclick: () => act("rerun", { failed_only: true }, "Rerun failed", `Rerun the tasks of ${view.name} that did not succeed; succeeded ones keep their outputs.`) }, "Rerun failed") : "",
    );
  };
  const renderCounts = () => {
    const n = {};
    for (const s of statuses.values()) n[s] = (n[s] || 0) + 1;
    replace(counts, Object.entries(n).sort().map(([s, c]) => h("span", { class: `count s-${s}` }, `${s} ${c}`)));
  };

  root.append(
    h("p", { class: "crumbs" }, link("/flows", "Flows"), " / ", view.name),
    h("h1", {}, view.name, " ", statusBadge),
    facts([
      ["Id", h("span", { class: "mono" }, view.id)],
      ["Tags", (view.tags || []).map((t) => h("span", { class: "tag" }, t))],
      ["Created", formatTime(view.created_at)],
      ["Finished", formatTime(view.finished_at)],
      ["Tasks", String(view.task_count)],
      ["Rerun of", view.rerun_of ? link(`/flows/${seg(view.rerun_of)}`, view.rerun_of) : ""],
    ]),
    (view.errors || []).length ? h("ul", { class: "errors" }, view.errors.map((e) => h("li", {}, `${e.path}: ${e.message}`))) : "",
    actions,
    counts,
  );
  renderActions();
  renderCounts();

  // Graph -----------------------------------------------------------------------------
  const dag = graph(view.tasks, statusOf, openTask);
  const find = h("input", { type: "search", placeholder: "task name", list: "task-names", class: "find" });
  const names = h("datalist", { id: "task-names" });
  if (view.tasks.length > SVG_MAX_TASKS) {
    // Thousands of names in a datalist are slow to build: add them after the first paint.
    setTimeout(() => names.append(...view.tasks.map((t) => h("option", { value: t.name }))), 0);
  } else names.append(...view.tasks.map((t) => h("option", { value: t.name })));
  const findForm = h("form", { class: "find-task" }, h("label", {}, "Open task ", find), names);
  findForm.addEventListener("submit", (e) => {
    e.preventDefault();
    if (statuses.has(find.value)) openTask(find.value);
    else notify(`no task "${find.value}" in this flow`, "error");
  });
  root.append(h("section", { class: "panel", "data-panel": "graph" }, h("h2", {}, "Graph", view.tasks.length > SVG_MAX_TASKS ? h("span", { class: "muted" }, ` — ${view.tasks.length} tasks by depth; scroll to pan, click a task`) : ""), findForm, dag.el));

  // Gantt -----------------------------------------------------------------------------
  const chart = gantt(attempts, openTask);
  root.append(h("section", { class: "panel", "data-panel": "gantt" }, h("h2", {}, "Attempts"), chart.el));

  // Artifacts -------------------------------------------------------------------------
  const artifactList = h("div", {}, h("p", { class: "muted" }, "…"));
  root.append(h("section", { class: "panel", "data-panel": "artifacts" }, h("h2", {}, "Artifacts"), artifactList));
  const showArtifacts = async () => {
    try {
      const found = await call(`/flows/${seg(flowId)}/artifacts`, { signal });
      replace(artifactList, found.length ? artifactTable(flowId, found) : h("p", { class: "muted" }, "None."));
    } catch (error) {
      if (error.name !== "AbortError") replace(artifactList, h("p", { class: "error" }, error.message));
    }
  };
  showArtifacts();

  // Events ----------------------------------------------------------------------------
  const eventList = h("ol", { class: "events", reversed: true });
  const eventNote = h("p", { class: "muted" });
  const downloadButton = h("button", { type: "button", onclick: () => download(`${flowId}-events.json`, JSON.stringify(events, null, 2)) }, "Download JSON");
  root.append(h("section", { class: "panel", "data-panel": "events" }, h("h2", {}, "Events ", downloadButton), eventNote, eventList));
  const renderEvents = () => {
    const shown = events.slice(-EVENTS_SHOWN).reverse();
    eventNote.textContent = events.length > EVENTS_SHOWN ? `The latest ${EVENTS_SHOWN} of ${events.length} events; download the JSON for all.` : `${events.length} events`;
    replace(eventList, shown.map((e) => h("li", { value: e.seq }, h("time", {}, formatTime(e.at)), " ", h("span", { class: "etype" }, e.type), e.task ? [" ", link(`/flows/${seg(flowId)}/tasks/${seg(e.task)}`, e.task)] : "", " ", h("span", { class: "edetail" }, eventDetail(e)))));
  };

  // Live: the event stream ------------------------------------------------------------
  const changed = new Set();
  const repaint = perFrame(() => {
    dag.update(changed.size && view.tasks.length <= SVG_MAX_TASKS ? [...changed] : undefined);
    changed.clear();
    chart.update();
    renderCounts();
    renderEvents();
    replace(statusBadge, badge(flowStatus));
    document.body.dataset.flowStatus = flowStatus;
    renderActions();
  });
  document.body.dataset.flowStatus = flowStatus;
  const source = new EventSource(`${API}/flows/${seg(flowId)}/events`);
  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    if (events.length && event.seq <= events[events.length - 1].seq) return;
    events.push(event);
    attempts.add(event);
    // The view already holds the state up to its seq; later events move it.
    if (event.seq > view.seq) {
      const status = taskStatusAfter(event);
      if (status) {
        statuses.set(event.task, status);
        changed.add(event.task);
      }
      flowStatus = flowStatusAfter(flowStatus, event);
    }
    if (TERMINAL_FLOW_EVENTS.has(event.type)) {
      source.close(); // the stream ends here; do not let EventSource reconnect
      flowStatus = flowStatusAfter(flowStatus, event);
      showArtifacts();
    }
    repaint();
  };
  for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
  signal.addEventListener("abort", () => {
    source.close();
    chart.stop();
  });
  repaint();
}

export const EVENT_TYPES = ["flow_submitted", "flow_rejected", "task_dispatched", "task_queued", "task_started", "task_succeeded", "task_attempt_failed", "task_snoozed", "task_cancelled", "task_failed", "task_skipped", "flow_succeeded", "flow_failed", "flow_cancel_requested", "flow_cancelled", "flow_deduplicated"];

function eventDetail(e) {
  switch (e.type) {
    case "task_started": return e.runner ? `on ${e.runner}` : "";
    case "task_dispatched": return `attempt ${e.attempt} to ${e.queue}`;
    case "task_succeeded": return `attempt ${e.attempt}, exit ${e.exit_code ?? 0}`;
    case "task_attempt_failed":
    case "task_failed": return `attempt ${e.attempt}: ${e.error_type}${e.exit_code != null ? ` (exit ${e.exit_code})` : ""}: ${e.message}`;
    case "task_cancelled":
    case "task_skipped":
    case "flow_cancelled":
    case "flow_cancel_requested": return e.reason || "";
    case "flow_failed": return `failed: ${(e.failed_tasks || []).join(", ")}`;
    case "flow_rejected": return (e.errors || []).map((x) => x.message).join("; ");
    default: return "";
  }
}

/** Artifacts with their size and SHA-256, each a download link. */
export function artifactTable(flowId, found) {
  return h(
    "table",
    { class: "artifacts" },
    h("thead", {}, h("tr", {}, ["Name", "Size", "SHA-256", "Modified", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, found.map((a) => h(
      "tr",
      {},
      h("td", {}, a.name),
      h("td", { class: "num" }, a.size === undefined ? "" : a.size.toLocaleString()),
      h("td", { class: "mono" }, a.sha256 || ""),
      h("td", {}, formatTime(a.modified)),
      h("td", {}, h("a", { href: `${API}/flows/${seg(flowId)}/artifacts/${seg(a.name)}`, download: a.name, "data-artifact": a.name }, "Download")),
    ))),
  );
}
