"""OpenTelemetry for weir: setup, NATS trace propagation, flow traces from events, metrics.

A flow is one trace, whatever process touches it and however often they restart: its trace
id, the id of its root span and the id of every task attempt's span are derived from the
flow id (and task name and attempt number), so a span started anywhere under
`flow_context(flow_id)` or `attempt_context(...)` lands in the right place. The long spans
(the flow, each attempt with its queue-wait and run phases) are not held open by a process:
they are emitted once their end is known, with their true start and end times taken from
the flow's events (`emit_attempt_spans`, `emit_flow_span`, `emit_flow_spans`).

Exporters are configured from the standard `OTEL_*` variables and only when they ask for
one; with none set, `setup` installs nothing and every call here costs next to nothing.

```python
telemetry.setup("weir-runner")
with telemetry.receiving(msg.subject, msg.headers, message_id=dispatch.attempt_id):
    ...
telemetry.metrics.task_finished("default", "succeeded", duration_s=12.5)
telemetry.shutdown()
```

The modules, by concern: `attributes` (span and attribute names), `ids` (deterministic ids
and contexts), `providers` (setup from the environment), `propagation` (trace context in
NATS headers), `messaging` (publish and receive spans), `timeline` (a flow's attempts folded
from its events), `spans` (the long spans emitted from a timeline), `instruments` (metrics).
"""

from __future__ import annotations

from weir.telemetry.attributes import (
    ATTR_ATTEMPT,
    ATTR_ATTEMPT_ID,
    ATTR_DECISION,
    ATTR_ERROR_TYPE,
    ATTR_EXIT_CODE,
    ATTR_FLOW_ID,
    ATTR_FLOW_NAME,
    ATTR_FLOW_STATUS,
    ATTR_QUEUE,
    ATTR_RUNNER,
    ATTR_SKIP_REASON,
    ATTR_TASK,
    ATTR_TASK_STATUS,
    SPAN_ATTRIBUTES,
    SPAN_FLOW,
    SPAN_QUEUE_WAIT,
    SPAN_RUN,
    SPAN_TASK,
)
from weir.telemetry.ids import (
    FlowIdGenerator,
    attempt_context,
    attempt_span_id,
    attempt_traceparent,
    flow_context,
    flow_span_id,
    flow_trace_id,
    flow_trace_id_hex,
    flow_traceparent,
    phase_span_id,
    traceparent,
)
from weir.telemetry.instruments import (
    DISPATCH_LATENCY,
    DURATION_BUCKETS_S,
    FLOWS_FINISHED,
    FLOWS_STARTED,
    LATENCY_BUCKETS_S,
    METRICS,
    QUEUE_DEPTH,
    RELAY_LAG,
    TASK_DURATION,
    TASK_LOST,
    TASK_RETRIES,
    TASKS_FINISHED,
    TASKS_STARTED,
    MetricName,
    Metrics,
    QueueDepths,
    metric_names,
    metrics,
)
from weir.telemetry.messaging import publishing, receiving, receiving_batch, subject_template
from weir.telemetry.propagation import extract, inject
from weir.telemetry.providers import (
    INSTRUMENTATION_NAME,
    ExportPlan,
    export_plan,
    new_tracer_provider,
    resource,
    setup,
    shutdown,
    tracer,
)
from weir.telemetry.spans import (
    attempt_attributes,
    emit_attempt_spans,
    emit_flow_span,
    emit_flow_spans,
)
from weir.telemetry.timeline import Attempt, FlowTimeline, Skip, flow_timeline

__all__ = (
    "ATTR_ATTEMPT",
    "ATTR_ATTEMPT_ID",
    "ATTR_DECISION",
    "ATTR_ERROR_TYPE",
    "ATTR_EXIT_CODE",
    "ATTR_FLOW_ID",
    "ATTR_FLOW_NAME",
    "ATTR_FLOW_STATUS",
    "ATTR_QUEUE",
    "ATTR_RUNNER",
    "ATTR_SKIP_REASON",
    "ATTR_TASK",
    "ATTR_TASK_STATUS",
    "DISPATCH_LATENCY",
    "DURATION_BUCKETS_S",
    "FLOWS_FINISHED",
    "FLOWS_STARTED",
    "INSTRUMENTATION_NAME",
    "LATENCY_BUCKETS_S",
    "METRICS",
    "QUEUE_DEPTH",
    "RELAY_LAG",
    "SPAN_ATTRIBUTES",
    "SPAN_FLOW",
    "SPAN_QUEUE_WAIT",
    "SPAN_RUN",
    "SPAN_TASK",
    "TASKS_FINISHED",
    "TASKS_STARTED",
    "TASK_DURATION",
    "TASK_LOST",
    "TASK_RETRIES",
    "Attempt",
    "ExportPlan",
    "FlowIdGenerator",
    "FlowTimeline",
    "MetricName",
    "Metrics",
    "QueueDepths",
    "Skip",
    "attempt_attributes",
    "attempt_context",
    "attempt_span_id",
    "attempt_traceparent",
    "emit_attempt_spans",
    "emit_flow_span",
    "emit_flow_spans",
    "export_plan",
    "extract",
    "flow_context",
    "flow_span_id",
    "flow_timeline",
    "flow_trace_id",
    "flow_trace_id_hex",
    "flow_traceparent",
    "inject",
    "metric_names",
    "metrics",
    "new_tracer_provider",
    "phase_span_id",
    "publishing",
    "receiving",
    "receiving_batch",
    "resource",
    "setup",
    "shutdown",
    "subject_template",
    "traceparent",
    "tracer",
)
