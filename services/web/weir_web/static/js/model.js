// A flow as its events move it: its status, its tasks' statuses (mapped tasks' instances
// included), attempts, condition reads and latest spec, folded in the browser from the SSE
// stream of /api/v1/flows/{id}/events by the rules of weir_proto.status.

export const TERMINAL_FLOW_EVENTS = new Set(["flow_succeeded", "flow_failed", "flow_cancelled", "flow_rejected", "flow_deduplicated"]);
export const TERMINAL_TASK = new Set(["succeeded", "failed", "skipped", "cancelled"]);
export const ACTIVE_FLOW = new Set(["scheduled", "pending", "running", "paused", "cancelling"]);

const taskTo = (status) => (s, e) => s.setTask(e.task, status);
const flowTo = (status) => (s) => s.setFlow(status);
/** A skip, queueing or dispatch starts a scheduled flow (weir_proto.status). */
const startingTaskTo = (status) => (s, e) => {
  s.setTask(e.task, status);
  if (s.status === "scheduled") s.setFlow("pending");
};

/**
 * What each event does to a flow: one entry per event type of weir_proto.events, no more and
 * no fewer (tests/browser/test_stepping.py compares them), so the pages listen to every type.
 * @type {Record<string, (s: FlowState, e: any) => void>}
 */
const FOLDS = {
  flow_submitted: (s, e) => {
    s.spec = e.spec;
    s.setFlow(e.start_at ? "scheduled" : "pending");
  },
  flow_rejected: flowTo("rejected"),
  flow_deduplicated: flowTo("duplicate"),
  flow_updated: (s, e) => {
    s.spec = e.spec;
    for (const name of s.tasks.keys()) s.setTask(name, "pending");
    if (s.status !== "paused") s.setFlow(e.start_at ? "scheduled" : "pending");
  },
  task_queued: startingTaskTo("queued"),
  task_dispatched: startingTaskTo("dispatched"),
  task_skipped: startingTaskTo("skipped"),
  task_started: (s, e) => {
    s.setTask(e.task, "running");
    if (s.status === "pending") s.setFlow("running");
  },
  task_taken_over: () => {}, // the attempt runs on under another runner (Attempts)
  task_succeeded: taskTo("succeeded"),
  task_attempt_failed: taskTo("retrying"),
  task_snoozed: taskTo("retrying"),
  task_cancelled: taskTo("cancelled"),
  task_failed: taskTo("failed"),
  task_expanded: (s, e) => s.expand(e.task, e.count),
  task_condition_read: (s, e) => s.conditions.set(e.task, e.values || {}),
  task_retried: (s, e) => {
    for (const name of e.tasks) s.setTask(name, "pending");
    if (s.status !== "paused") s.setFlow("running");
  },
  flow_paused: flowTo("paused"),
  flow_resumed: (s, e) => s.setFlow(e.status),
  flow_cancel_requested: (s, e) => {
    if (!e.fail_fast) s.setFlow("cancelling"); // fail_fast only stops the running siblings
  },
  flow_succeeded: flowTo("succeeded"),
  flow_failed: flowTo("failed"),
  flow_cancelled: flowTo("cancelled"),
};

/** Every event type there is: the pages listen to each (EventSource needs the names). */
export const EVENT_TYPES = Object.freeze(Object.keys(FOLDS));

/** `NAME[i]` is instance i of mapped task NAME (task names are DNS labels: no brackets). */
export function parentOf(name) {
  const match = /^(.+)\[(\d+)\]$/.exec(name);
  return match ? match[1] : null;
}

/**
 * A flow's state from its view (`GET /flows/{id}`) moved on by its events. The view already
 * holds the statuses up to its `seq`; earlier events only add what the view lacks (attempts,
 * condition reads, the spec, instances).
 */
export class FlowState {
  constructor(view) {
    this.viewSeq = view.seq;
    this.lastSeq = 0;
    this.status = view.status;
    /** @type {Map<string, any>} each task as the view has it, instances added as they come */
    this.tasks = new Map(view.tasks.map((t) => [t.name, t]));
    this.statuses = new Map(view.tasks.map((t) => [t.name, t.status]));
    this.attempts = new Attempts();
    /** @type {Map<string, Record<string, any>>} the outputs each task's condition read */
    this.conditions = new Map();
    this.spec = null;
    this.live = false;
    this.changed = new Set();
    this.added = [];
  }

  statusOf(name) {
    return this.statuses.get(name) || "pending";
  }

  /**
   * Folds one event in. Returns null for an event already folded (a replayed stream), else
   * what it changed: task names whose status moved and tasks it added.
   */
  fold(event) {
    if (event.seq <= this.lastSeq) return null;
    this.lastSeq = event.seq;
    this.live = event.seq > this.viewSeq;
    this.changed = new Set();
    this.added = [];
    this.attempts.add(event);
    const fold = FOLDS[event.type];
    if (fold) fold(this, event);
    return { changed: [...this.changed], added: this.added };
  }

  setTask(name, status) {
    if (!this.live || this.statuses.get(name) === status) return;
    this.statuses.set(name, status);
    this.changed.add(name);
  }

  setFlow(status) {
    if (this.live) this.status = status;
  }

  /** Mapped task `name` became `count` instances `name[i]`, each laid out beside it. */
  expand(name, count) {
    const parent = this.tasks.get(name);
    for (let i = 0; i < count; i++) {
      const instance = `${name}[${i}]`;
      if (this.tasks.has(instance)) continue;
      const task = { name: instance, status: "pending", attempt: 0, queue: parent ? parent.queue : "default", depends: [], outputs: [] };
      this.tasks.set(instance, task);
      if (!this.statuses.has(instance)) this.statuses.set(instance, "pending");
      this.added.push(task);
    }
  }

  /** The tasks for the graph: an instance is drawn in its mapped task's column. */
  graphTasks() {
    return [...this.tasks.values()].map((t) => {
      const parent = parentOf(t.name);
      const of = parent && this.tasks.get(parent);
      return of ? { ...t, depends: of.depends } : t;
    });
  }
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
      case "task_taken_over":
        a.runner = event.runner;
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
