// One flow: its graph coloured live by status, the attempt Gantt, the event log (JSON
// download), artifacts; cancel / rerun / rerun-failed, pause / resume / update with
// confirmation.

import { API, call, canWrite, seg } from "./api.js";
import { download, h, perFrame, replace } from "./dom.js";
import { graph, SVG_MAX_TASKS } from "./dag.js";
import { eventDetail } from "./eventtext.js";
import { gantt } from "./gantt.js";
import { followFlow } from "./flowstream.js";
import { ACTIVE_FLOW, FlowState, TERMINAL_FLOW_EVENTS } from "./model.js";
import { flowStepping } from "./stepping.js";
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
  const state = new FlowState(view);
  const events = [];
  const openTask = (name) => navigate(`/flows/${seg(flowId)}/tasks/${seg(name)}`);

  // Header and actions ----------------------------------------------------------------
  const statusBadge = h("span", {}, badge(state.status));
  const factList = h("div");
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
  /** What the update form starts from: the view's values, the types and priority of the
   * latest spec in the log (until the stream has brought it, the priority is left blank). */
  const current = () => {
    const declared = (state.spec && state.spec.params) || {};
    const params = Object.entries(view.params || {}).map(([name, value]) => [name, { type: declared[name] ? declared[name].type || "string" : "", value }]);
    return { priority: state.spec ? state.spec.priority ?? 100 : null, startAt: view.start_at || null, params: Object.fromEntries(params), tags: view.tags || [], metadata: view.metadata || {} };
  };
  let actionsFor = null;
  const renderActions = () => {
    if (!canWrite() || actionsFor === state.status) return;
    actionsFor = state.status;
    const active = ACTIVE_FLOW.has(state.status);
    replace(
      actions,
      flowStepping(flowId, view.name, state.status, current),
      active ? h("button", { type: "button", class: "danger", "data-action": "cancel", onclick: () => act("cancel", { reason: "cancelled from the web UI" }, "Cancel flow", `Cancel ${view.name} (${flowId})? Running attempts are killed.`) }, "Cancel") : "",
      !active ? h("button", { type: "button", "data-action": "rerun", onclick: () => act("rerun", { failed_only: false }, "Rerun flow", `Run every task of ${view.name} again, as a new flow.`) }, "Rerun") : "",
      !active && state.status !== "succeeded" ? h("button", { type: "button", "data-action": "rerun-failed", onclick: () => act("rerun", { failed_only: true }, "Rerun failed", `Rerun the tasks of ${view.name} that did not succeed; succeeded ones keep their outputs.`) }, "Rerun failed") : "",
    );
  };
  const renderCounts = () => {
    const n = {};
    for (const s of state.statuses.values()) n[s] = (n[s] || 0) + 1;
    replace(counts, Object.entries(n).sort().map(([s, c]) => h("span", { class: `count s-${s}` }, `${s} ${c}`)));
  };
  const renderFacts = () => replace(factList, facts([
    ["Id", h("span", { class: "mono" }, view.id)],
    ["Tags", (view.tags || []).map((t) => h("span", { class: "tag" }, t))],
    ["Params", Object.entries(view.params || {}).map(([k, v]) => h("span", { class: "tag mono", "data-param": k }, `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`))],
    ["Metadata", Object.entries(view.metadata || {}).map(([k, v]) => h("span", { class: "tag mono", "data-metadata": k }, `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`))],
    ["Start at", formatTime(view.start_at)],
    ["Created", formatTime(view.created_at)],
    ["Finished", formatTime(view.finished_at)],
    ["Tasks", String(state.tasks.size)],
    ["Rerun of", view.rerun_of ? link(`/flows/${seg(view.rerun_of)}`, view.rerun_of) : ""],
  ]));
  /** An update changed the view's tags, params or start: read it again. */
  const refreshView = async () => {
    try {
      view = await call(`/flows/${seg(flowId)}`, { signal });
      renderFacts();
    } catch (error) {
      if (error.name !== "AbortError") showError(error, "reading the flow");
    }
  };

  root.append(
    h("p", { class: "crumbs" }, link("/flows", "Flows"), " / ", view.name),
    h("h1", {}, view.name, " ", statusBadge),
    factList,
    (view.errors || []).length ? h("ul", { class: "errors" }, view.errors.map((e) => h("li", {}, `${e.path}: ${e.message}`))) : "",
    actions,
    counts,
  );
  renderFacts();
  renderActions();
  renderCounts();

  // Graph -----------------------------------------------------------------------------
  let dag = graph(state.graphTasks(), (name) => state.statusOf(name), openTask);
  const find = h("input", { type: "search", placeholder: "task name", list: "task-names", class: "find" });
  const names = h("datalist", { id: "task-names" });
  const listNames = (tasks) => names.append(...tasks.map((t) => h("option", { value: t.name })));
  if (view.tasks.length > SVG_MAX_TASKS) {
    // Thousands of names in a datalist are slow to build: add them after the first paint.
    setTimeout(() => listNames(view.tasks), 0);
  } else listNames(view.tasks);
  const findForm = h("form", { class: "find-task" }, h("label", {}, "Open task ", find), names);
  findForm.addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.tasks.has(find.value)) openTask(find.value);
    else notify(`no task "${find.value}" in this flow`, "error");
  });
  const graphNote = h("span", { class: "muted" });
  const graphBox = h("div", {}, dag.el);
  const noteGraph = () => (graphNote.textContent = state.tasks.size > SVG_MAX_TASKS ? ` — ${state.tasks.size} tasks by depth; scroll to pan, click a task` : "");
  noteGraph();
  root.append(h("section", { class: "panel", "data-panel": "graph" }, h("h2", {}, "Graph", graphNote), findForm, graphBox));
  /** Instances of a mapped task appeared: lay the graph out again. */
  const regraph = () => {
    dag = graph(state.graphTasks(), (name) => state.statusOf(name), openTask);
    replace(graphBox, dag.el);
    noteGraph();
  };

  // Gantt -----------------------------------------------------------------------------
  const chart = gantt(state.attempts, openTask);
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
  let added = false;
  const repaint = perFrame(() => {
    if (added) {
      regraph();
      renderFacts(); // the task count
    } else dag.update(changed.size && state.tasks.size <= SVG_MAX_TASKS ? [...changed] : undefined);
    added = false;
    changed.clear();
    chart.update();
    renderCounts();
    renderEvents();
    replace(statusBadge, badge(state.status));
    document.body.dataset.flowStatus = state.status;
    renderActions();
  });
  document.body.dataset.flowStatus = state.status;
  const stream = followFlow(flowId, state, (event, moved) => {
    events.push(event);
    for (const name of moved.changed) changed.add(name);
    if (moved.added.length) {
      added = true;
      setTimeout(() => listNames(moved.added), 0); // up to WEIR_MAX_TASKS names: after the paint
    }
    if (event.type === "flow_updated" && event.seq > view.seq) refreshView();
    if (TERMINAL_FLOW_EVENTS.has(event.type)) showArtifacts();
    repaint();
  });
  signal.addEventListener("abort", () => {
    stream.stop();
    chart.stop();
  });
  repaint();
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
