// One task: its attempts (exit codes, errors, runner, durations), what its condition read, a
// live log tail, its artifacts, and Retry / Retry with downstream.

import { API, call, seg, text } from "./api.js";
import { h, perFrame, replace } from "./dom.js";
import { conditionText } from "./eventtext.js";
import { artifactTable } from "./flow.js";
import { followFlow } from "./flowstream.js";
import { FlowState, parentOf, TERMINAL_TASK } from "./model.js";
import { taskStepping } from "./stepping.js";
import { formatDuration, formatTime } from "./time.js";
import { badge, facts, link } from "./ui.js";

/** At most this many characters of a log are on the page; the rest is in the download. */
export const LOG_RENDER_MAX = 1_000_000;

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

/**
 * A log that follows while the attempt runs (SSE) or is fetched once when it has ended.
 * It stays where the reader scrolled to (it only follows the bottom when the reader is
 * there), keeps at most LOG_RENDER_MAX characters on the page, and copies or downloads the
 * whole raw log.
 */
export function logTail(flowId, task, attempt, finished) {
  const path = `/flows/${seg(flowId)}/tasks/${seg(task)}/logs?attempt=${attempt}`;
  const pre = h("pre", { class: "log", tabindex: 0, "data-log": "" });
  const state = h("span", { class: "muted" }, finished ? "loading…" : "following…");
  const dropped = h("p", { class: "muted", hidden: true });
  const chunks = [];
  let rendered = 0;
  let pending = [];

  const copy = h("button", { type: "button", onclick: async () => {
    await navigator.clipboard.writeText(chunks.map((c) => c[1]).join(""));
    copy.textContent = "Copied";
    setTimeout(() => (copy.textContent = "Copy"), 1500);
  } }, "Copy");
  const raw = h("a", { href: `${API}${path}`, download: `${flowId}-${task}-${attempt}.log`, class: "button" }, "Download raw");
  const el = h("div", {}, h("div", { class: "log-bar" }, state, copy, raw), dropped, pre);

  const atBottom = () => pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  const flush = perFrame(() => {
    const follow = atBottom();
    const fragment = document.createDocumentFragment();
    for (const [stream, data] of pending) {
      const span = document.createElement("span");
      if (stream === "stderr") span.className = "stderr";
      span.textContent = data;
      fragment.append(span);
      rendered += data.length;
    }
    pending = [];
    pre.append(fragment);
    // Trim from the top only while the reader is at the bottom: trimming above a reader
    // who scrolled up would move the text under their eyes.
    if (follow || rendered > LOG_RENDER_MAX * 2) {
      let cut = 0;
      while (rendered > LOG_RENDER_MAX && pre.firstChild) {
        rendered -= pre.firstChild.textContent.length;
        cut += pre.firstChild.textContent.length;
        pre.firstChild.remove();
      }
      if (cut) {
        dropped.hidden = false;
        dropped.textContent = "Earlier output is not shown here; download the raw log for all of it.";
      }
    }
    if (follow) pre.scrollTop = pre.scrollHeight;
  });
  const add = (stream, data) => {
    chunks.push([stream, data]);
    pending.push([stream, data]);
    flush();
  };

  let source = null;
  const controller = new AbortController();
  if (finished) {
    // An ended attempt's log does not change: fetched once, never polled.
    text(path, controller.signal)
      .then((body) => {
        add("stdout", body);
        state.textContent = body ? `${body.length.toLocaleString()} characters` : "empty";
      })
      .catch((error) => { if (error.name !== "AbortError") state.textContent = error.message; });
  } else {
    let opened = 0;
    source = new EventSource(`${API}${path}&follow=true`);
    source.addEventListener("open", () => {
      // A reconnect replays the log from its start: start over rather than repeat it.
      if (opened++ > 0) {
        chunks.length = 0;
        pending = [];
        rendered = 0;
        pre.replaceChildren();
      }
    });
    source.addEventListener("stdout", (m) => add("stdout", m.data));
    source.addEventListener("stderr", (m) => add("stderr", m.data));
    source.addEventListener("end", () => {
      source.close();
      state.textContent = "ended";
    });
  }
  const stop = () => {
    controller.abort();
    if (source) source.close();
  };
  return { el, stop, chunks };
}
