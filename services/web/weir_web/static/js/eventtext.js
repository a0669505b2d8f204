// An event as one line of text for the event log: what happened, beyond its type and task.

import { formatTime } from "./time.js";

/** The details of event `e` worth a reader's eye ("" when its type says it all). */
export function eventDetail(e) {
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
    case "flow_deduplicated": return `unique key ${e.key} is held by ${e.existing}`;
    case "task_snoozed": return `attempt ${e.attempt} until ${formatTime(e.until)}`;
    case "flow_paused": return e.reason || "";
    case "flow_resumed": return `now ${e.status}`;
    case "flow_updated": return `changed ${(e.changed || []).join(", ")}`;
    case "task_retried": return `runs again: ${(e.tasks || []).join(", ")}${e.downstream ? " (with downstream)" : ""}`;
    case "task_expanded": return `into ${e.count} instance${e.count === 1 ? "" : "s"}`;
    case "task_condition_read": return conditionText(e.values);
    case "task_taken_over": return `attempt ${e.attempt} by ${e.runner} (${e.previous_runner} silent ${e.silent_for} s)`;
    default: return "";
  }
}

/** The outputs a `when` condition read, as `name=value` text. */
export function conditionText(values) {
  return Object.entries(values || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
}
