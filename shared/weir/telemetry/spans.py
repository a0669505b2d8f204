"""The long spans of a flow, emitted once their end is known.

The flow span and each attempt's span (with its queue-wait and run phases) are not held
open by any process: they are emitted from the flow's timeline with their true start and
end times and their flow-derived ids (`emit_attempt_spans`, `emit_flow_span`,
`emit_flow_spans`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from opentelemetry.trace import Status, StatusCode, TracerProvider
from weir_proto import ids
from weir_proto.events import FlowEvent
from weir_proto.status import AttemptState, FlowStatus

from weir.telemetry import attributes
from weir.telemetry.ids import (
    attempt_span_id,
    flow_context,
    flow_span_id,
    flow_trace_id,
    phase_span_id,
    remote_parent,
    start_span_with_ids,
)
from weir.telemetry.providers import tracer
from weir.telemetry.timeline import Attempt, FlowTimeline, flow_timeline


def _ns(at: datetime) -> int:
    # Exact integer arithmetic: a float timestamp would lose microseconds.
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1_000


def attempt_attributes(attempt: Attempt) -> dict[str, str | int]:
    attrs: dict[str, str | int] = {
        attributes.ATTR_FLOW_ID: attempt.flow_id,
        attributes.ATTR_TASK: attempt.task,
        attributes.ATTR_ATTEMPT: attempt.attempt,
        attributes.ATTR_ATTEMPT_ID: ids.attempt_id(attempt.flow_id, attempt.task, attempt.attempt),
        attributes.ATTR_QUEUE: attempt.queue,
        attributes.ATTR_TASK_STATUS: attempt.status.value,
    }
    if attempt.runner:
        attrs[attributes.ATTR_RUNNER] = attempt.runner
    if attempt.exit_code is not None:
        attrs[attributes.ATTR_EXIT_CODE] = attempt.exit_code
    if attempt.error_type:
        attrs[attributes.ATTR_ERROR_TYPE] = attempt.error_type
    return attrs


def emit_attempt_spans(attempt: Attempt, provider: TracerProvider | None = None) -> int:
    """Emit `task {task}` (child of the flow span) with its `queue-wait` and `run` phases,
    timed by the attempt's events. Only a finished attempt is emitted; returns spans emitted.

    Call it once the attempt's `task_succeeded`/`task_failed` is committed. Emitting twice
    (after a crash) sends spans with the same ids again, which backends show as duplicates.
    """
    if not attempt.finished or attempt.finished_at is None:
        return 0
    tr = tracer(provider)
    trace_id = flow_trace_id(attempt.flow_id)
    span_id = attempt_span_id(attempt.flow_id, attempt.task, attempt.attempt)
    start = attempt.dispatched_at or attempt.started_at or attempt.finished_at
    end_ns = _ns(attempt.finished_at)
    attrs = attempt_attributes(attempt)
    span = start_span_with_ids(
        tr,
        f"{attributes.SPAN_TASK} {attempt.task}",
        trace_id=trace_id,
        span_id=span_id,
        parent=flow_context(attempt.flow_id),
        start_ns=_ns(start),
        attributes=attrs,
    )
    if attempt.status is AttemptState.FAILED:
        span.set_status(Status(StatusCode.ERROR, f"{attempt.error_type}: {attempt.message}"[:512]))
    elif attempt.status is AttemptState.CANCELLED:
        span.set_status(Status(StatusCode.ERROR, f"cancelled: {attempt.message}"[:512]))
    emitted = 1
    parent = remote_parent(trace_id, span_id)
    phase_attrs = {k: attrs[k] for k in attributes.PHASE_ATTRIBUTES}
    phases: list[tuple[str, datetime, datetime]] = []
    if attempt.dispatched_at is not None:
        phases.append(
            (
                attributes.SPAN_QUEUE_WAIT,
                attempt.dispatched_at,
                attempt.started_at or attempt.finished_at,
            )
        )
    if attempt.started_at is not None:
        phases.append((attributes.SPAN_RUN, attempt.started_at, attempt.finished_at))
    for phase, begin, finish in phases:
        child = start_span_with_ids(
            tr,
            phase,
            trace_id=trace_id,
            span_id=phase_span_id(attempt.flow_id, attempt.task, attempt.attempt, phase),
            parent=parent,
            start_ns=_ns(begin),
            attributes=phase_attrs,
        )
        if phase == attributes.SPAN_RUN and attempt.status is AttemptState.FAILED:
            child.set_status(Status(StatusCode.ERROR))
        child.end(end_time=_ns(finish))
        emitted += 1
    span.end(end_time=end_ns)
    return emitted


def emit_flow_span(timeline: FlowTimeline, provider: TracerProvider | None = None) -> int:
    """Emit the flow's root span `flow {name}` from submit to its terminal event, with an
    event per skipped task and per decision (pause, resume, update, retry, condition read,
    expansion, cancel). Only a finished flow is emitted; returns spans emitted (0 or 1)."""
    if not timeline.finished or timeline.finished_at is None:
        return 0
    start = timeline.submitted_at or timeline.finished_at
    attrs: dict[str, str | int] = {
        attributes.ATTR_FLOW_ID: timeline.flow_id,
        attributes.ATTR_FLOW_STATUS: timeline.status.value,
    }
    if timeline.name:
        attrs[attributes.ATTR_FLOW_NAME] = timeline.name
    span = start_span_with_ids(
        tracer(provider),
        f"{attributes.SPAN_FLOW} {timeline.name or timeline.flow_id}",
        trace_id=flow_trace_id(timeline.flow_id),
        span_id=flow_span_id(timeline.flow_id),
        parent=None,
        start_ns=_ns(start),
        attributes=attrs,
    )
    for skip in timeline.skipped:
        span.add_event(
            "task_skipped",
            {attributes.ATTR_TASK: skip.task, attributes.ATTR_SKIP_REASON: skip.reason},
            timestamp=_ns(skip.at),
        )
    for decision in timeline.decisions:
        span.add_event(
            decision.kind,
            {attributes.ATTR_TASK: decision.task, attributes.ATTR_DECISION: decision.text},
            timestamp=_ns(decision.at),
        )
    if timeline.status not in (FlowStatus.SUCCEEDED, FlowStatus.DUPLICATE):
        span.set_status(Status(StatusCode.ERROR, timeline.status.value))
    span.end(end_time=_ns(timeline.finished_at))
    return 1


def emit_flow_spans(events: Iterable[FlowEvent], provider: TracerProvider | None = None) -> int:
    """Emit every finished attempt's spans and, if the flow is finished, the flow span: the
    whole trace of a flow at once (e.g. when it ends, or to re-export an old flow)."""
    timeline = flow_timeline(events)
    count = sum(emit_attempt_spans(a, provider) for a in timeline.attempts)
    return count + emit_flow_span(timeline, provider)
