// A flow as its events move it: task statuses and attempts, folded in the browser from the
// SSE stream of /api/v1/flows/{id}/events (the same rules as weir_proto.status).

export const TERMINAL_FLOW_EVENTS = new Set(["flow_succeeded", "flow_failed", "flow_cancelled", "flow_rejected", "flow_deduplicated"]);
export const TERMINAL_TASK = new Set(["succeeded", "failed", "skipped", "cancelled"]);
export const ACTIVE_FLOW = new Set(["scheduled", "pending", "running", "paused", "cancelling"]);

const TASK_STATUS_AFTER = {
  task_queued: "queued",
  task_dispatched: "dispatched",
  task_started: "running",
  task_succeeded: "succeeded",
  task_attempt_failed: "retrying",
  task_snoozed: "retrying",
  task_cancelled: "cancelled",
  task_failed: "failed",
  task_skipped: "skipped",
};

const FLOW_STATUS_AFTER = {
  flow_succeeded: "succeeded",
  flow_failed: "failed",
  flow_cancelled: "cancelled",
  flow_cancel_requested: "cancelling",
  flow_paused: "paused",
  flow_rejected: "rejected",
  flow_deduplicated: "duplicate",
};

/** The task's status after `event`, or null if the event is not about a task's status. */
export function taskStatusAfter(event) {
  return TASK_STATUS_AFTER[event.type] || null;
}

/** The flow's status after `event` (the current one if the event does not change it). */
export function flowStatusAfter(current, event) {
  if (FLOW_STATUS_AFTER[event.type]) return FLOW_STATUS_AFTER[event.type];
  if (event.type === "task_started" && (current === "pending" || current === "scheduled")) return "running";
  if (event.type === "flow_resumed") return event.status;
  if (event.type === "task_retried") return current === "paused" ? current : "running";
  if (event.type === "flow_updated" && current !== "paused") return event.start_at ? "scheduled" : "pending";
  return current;
}

/**
 * Attempts (one per task and attempt number) from the events: when each was dispatched,
 * started and ended, how, and on which runner.
 */
export class Attempts {
  constructor() {
    /** @type {Map<string, any>} */
    this.byKey = new Map();
  }

  /** Folds one event in; returns the attempt it touched, if any. */
  add(event) {
    if (!event.task || !event.attempt) return null;
    const key = `${event.task}#${event.attempt}`;
    let a = this.byKey.get(key);
    if (!a) {
      a = { task: event.task, attempt: event.attempt, dispatched: null, started: null, ended: null, status: "dispatched", runner: "", exit_code: null, error_type: "", message: "" };
      this.byKey.set(key, a);
    }
    const at = Date.parse(event.at);
    switch (event.type) {
      case "task_dispatched":
        a.dispatched = at;
        break;
      case "task_started":
        a.started = at;
        a.status = "running";
        a.runner = event.runner || "";
        break;
      case "task_succeeded":
        Object.assign(a, { ended: at, status: "succeeded", exit_code: event.exit_code ?? 0 });
        break;
      case "task_attempt_failed":
      case "task_failed":
        Object.assign(a, { ended: at, status: "failed", exit_code: event.exit_code ?? null, error_type: event.error_type, message: event.message });
        break;
      case "task_snoozed":
        Object.assign(a, { ended: at, status: "snoozed" });
        break;
      case "task_cancelled":
        Object.assign(a, { ended: at, status: "cancelled", message: event.reason || "" });
        break;
      default:
        break;
    }
    return a;
  }

  of(task) {
    return [...this.byKey.values()].filter((a) => a.task === task).sort((x, y) => x.attempt - y.attempt);
  }

  all() {
    return [...this.byKey.values()];
  }
}
