"""The names weir gives its spans and their attributes (dashboards and TraceQL use these)."""

from __future__ import annotations

ATTR_FLOW_ID = "weir.flow_id"
ATTR_FLOW_NAME = "weir.flow.name"
ATTR_FLOW_STATUS = "weir.flow.status"
ATTR_TASK = "weir.task"
ATTR_ATTEMPT = "weir.attempt"
ATTR_ATTEMPT_ID = "weir.attempt_id"
"""`<flow>-<task>-<attempt>` (hashed when long): the pod name, or the local attempt directory."""
ATTR_QUEUE = "weir.queue"
ATTR_TASK_STATUS = "weir.task.status"
ATTR_EXIT_CODE = "weir.exit_code"
ATTR_ERROR_TYPE = "weir.error_type"
ATTR_RUNNER = "weir.runner"
"""The runner (executor host) that ran the attempt, as reported in `task_started`."""
ATTR_SKIP_REASON = "weir.skip_reason"
ATTR_DECISION = "weir.decision"

SPAN_ATTRIBUTES: frozenset[str] = frozenset(
    {
        ATTR_FLOW_ID,
        ATTR_FLOW_NAME,
        ATTR_FLOW_STATUS,
        ATTR_TASK,
        ATTR_ATTEMPT,
        ATTR_ATTEMPT_ID,
        ATTR_QUEUE,
        ATTR_TASK_STATUS,
        ATTR_EXIT_CODE,
        ATTR_ERROR_TYPE,
        ATTR_RUNNER,
        ATTR_SKIP_REASON,
        "messaging.system",
        "messaging.destination.name",
        "messaging.destination.template",
        "messaging.message.id",
        "messaging.operation.name",
        "messaging.operation.type",
        "messaging.message.body.size",
    }
)
"""Every span attribute weir sets (dashboards and TraceQL may use only these)."""
PHASE_ATTRIBUTES = (ATTR_FLOW_ID, ATTR_TASK, ATTR_ATTEMPT, ATTR_QUEUE)
"""What an attempt's phase spans (queue-wait, run) carry of the attempt's attributes."""

SPAN_FLOW = "flow"
SPAN_TASK = "task"
SPAN_QUEUE_WAIT = "queue-wait"
SPAN_RUN = "run"
"""Long-span names: `flow {name}`, `task {task}`, and the attempt's two phases."""
