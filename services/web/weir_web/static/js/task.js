// One task: its attempts (exit codes, errors, runner, durations), what its condition read, a
// live log tail, its artifacts, and Retry / Retry with downstream.

import { call, seg } from "./api.js";
import { h, perFrame, replace } from "./dom.js";
import { conditionText } from "./eventtext.js";
import { artifactTable } from "./flow.js";
import { followFlow } from "./flowstream.js";
import { logTail } from "./logtail.js";
import { FlowState, parentOf, TERMINAL_TASK } from "./model.js";
import { taskStepping } from "./stepping.js";
import { formatDuration, formatTime } from "./time.js";
import { badge, facts, link } from "./ui.js";

export async function taskView(root, [flowId, task], { signal, navigate }) {
  let view;
  try {
    view = await call(`/flows/${seg(flowId)}`, { signal });
  } catch (error) {
    if (error.name !== "AbortError") root.append(h("p", { class: "error" }, error.message));
    return;
  }
  const state = new FlowState(view);
  const parent = parentOf(task);
  const info = view.tasks.find((t) => t.name === task) || (parent && view.tasks.some((t) => t.name === parent) ? { name: task, status: "pending", attempt: 0, queue: "", depends: [], outputs: [] } : null);
  if (!info) {
    root.append(h("h1", {}, "Task"), h("p", { class: "error" }, `flow ${flowId} has no task "${task}"`));
    return;
  }
  const chosen = Number(new URLSearchParams(location.search).get("attempt")) || 0;
  const attempts = state.attempts;
  const statusBadge = h("span", {}, badge(info.status));
  const actions = h("div", { class: "actions" });
  const condition = h("span", { class: "mono", "data-condition": "" });
  const conditionFacts = h("p", { class: "condition", hidden: true }, h("span", { class: "muted" }, "Its condition read "), condition);
  const attemptRows = h("tbody");
  const factList = h("div");
  /** The task's facts; runner, exit code and error are its latest attempt's once seen. */
  const renderFacts = () => {
    const last = attempts.of(task).at(-1);
    const [runner, exit, errorType, message] = last && last.attempt >= info.attempt
      ? [last.runner, last.exit_code, last.error_type, last.message]
      : [info.runner, info.exit_code, info.error_type, info.error_message];
    replace(factList, facts([
      ["Queue", info.queue],
      ["Instance of", parent ? link(`/flows/${seg(flowId)}/tasks/${seg(parent)}`, parent) : ""],
      ["Depends on", info.depends.length ? info.depends.map((d, i) => [i ? ", " : "", link(`/flows/${seg(flowId)}/tasks/${seg(d)}`, d)]) : "nothing"],
      ["Runner", runner || ""],
      ["Exit code", exit ?? ""],
      ["Error", errorType ? `${errorType}: ${message || ""}` : ""],
    ]));
  };
  root.append(
    h("p", { class: "crumbs" }, link("/flows", "Flows"), " / ", link(`/flows/${seg(flowId)}`, view.name), " / ", parent ? [link(`/flows/${seg(flowId)}/tasks/${seg(parent)}`, parent), " / "] : "", task),
    h("h1", {}, task, " ", statusBadge),
    factList,
    conditionFacts,
    actions,
    h("section", { class: "panel" }, h("h2", {}, "Attempts"), h("table", { class: "attempts" },
      h("thead", {}, h("tr", {}, ["#", "Status", "Runner", "Started", "Duration", "Exit", "Error", ""].map((t) => h("th", {}, t)))),
      attemptRows)),
  );
  const renderAttempts = () => {
    const list = attempts.of(task);
    replace(attemptRows, list.length ? list.map((a) => h(
      "tr",
      { dataset: { attempt: a.attempt } },
      h("td", {}, String(a.attempt)),
      h("td", {}, badge(a.status)),
      h("td", {}, a.runner),
      h("td", {}, a.started ? formatTime(new Date(a.started).toISOString()) : ""),
      h("td", { class: "num" }, a.started ? formatDuration((a.ended || Date.now()) - a.started) : ""),
      h("td", { class: "num" }, a.exit_code ?? ""),
      h("td", { class: "message" }, a.error_type ? [h("strong", {}, a.error_type), " ", h("span", {}, a.message)] : a.message),
      h("td", {}, link(`/flows/${seg(flowId)}/tasks/${seg(task)}?attempt=${a.attempt}`, "log")),
    )) : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No attempt yet.")));
    renderFacts();
    const status = state.statusOf(task);
    replace(statusBadge, badge(status));
    document.body.dataset.taskStatus = status;
    if (actions.dataset.status !== status) {
      actions.dataset.status = status;
      replace(actions, taskStepping(flowId, task, status, () => stream.reopen()));
    }
    const read = state.conditions.get(task);
    conditionFacts.hidden = !read;
    if (read) condition.textContent = conditionText(read) || "nothing";
  };

  // Log -------------------------------------------------------------------------------
  const logPanel = h("section", { class: "panel", "data-panel": "log" });
  root.append(logPanel);
  let tail = null;
  const showLog = (attempt, finished) => {
    if (tail) tail.stop();
    tail = logTail(flowId, task, attempt, finished);
    replace(logPanel, h("h2", {}, `Log — attempt ${attempt}`), tail.el);
  };

  // Artifacts -------------------------------------------------------------------------
  const outputs = new Set((info.outputs || []).map((o) => o.name));
  const artifactsPanel = h("section", { class: "panel", "data-panel": "artifacts" }, h("h2", {}, "Artifacts"));
  root.append(artifactsPanel);
  const showArtifacts = async () => {
    try {
      const found = (await call(`/flows/${seg(flowId)}/artifacts`, { signal })).filter((a) => outputs.has(a.name));
      replace(artifactsPanel, h("h2", {}, "Artifacts"), found.length ? artifactTable(flowId, found) : h("p", { class: "muted" }, "This task has no artifacts (yet)."));
    } catch (error) {
      if (error.name !== "AbortError") artifactsPanel.append(h("p", { class: "error" }, error.message));
    }
  };
  showArtifacts();

  // Live: the flow's events, this task's only ------------------------------------------
  let logAttempt = 0;
  const repaint = perFrame(renderAttempts);
  let replayed = false;
  const pickLog = () => {
    const latest = attempts.of(task).at(-1);
    const attempt = chosen || (latest ? latest.attempt : info.attempt);
    if (!attempt || attempt === logAttempt) return;
    const a = attempts.of(task).find((x) => x.attempt === attempt);
    logAttempt = attempt;
    showLog(attempt, Boolean(a && a.ended) || TERMINAL_TASK.has(state.statusOf(task)));
  };
  const stream = followFlow(flowId, state, (event) => {
    if (event.task === task) {
      if (event.type === "task_succeeded") {
        for (const o of event.outputs || []) outputs.add(o.name);
        showArtifacts();
      }
      if (replayed && (event.type === "task_started" || event.type === "task_dispatched")) pickLog();
    }
    if (!replayed && event.seq >= view.seq) {
      replayed = true;
      pickLog();
    }
    repaint();
  });
  signal.addEventListener("abort", () => {
    stream.stop();
    if (tail) tail.stop();
  });
  if (!view.seq) pickLog();
  renderAttempts();
}
