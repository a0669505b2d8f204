"""What the scheduler tells OpenTelemetry after each commit: metrics from the committed
events, and, when a flow ends, its whole trace (flow span, one span per attempt with its
queue-wait and run phases) built from the event log with true times and ids derived from
the flow id, so a scheduler restart mid-flow still yields one complete trace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from weir import telemetry
from weir_proto.events import (
    TERMINAL_FLOW_EVENTS,
    FlowEvent,
    FlowSubmitted,
    TaskAttemptFailed,
    TaskCancelled,
    TaskDispatched,
    TaskFailed,
    TaskStarted,
    TaskSucceeded,
    event_type,
)

from weir_scheduler.store import Change, EventStore

log = logging.getLogger("weir.scheduler.observe")

_event_decoder = msgspec.json.Decoder(FlowEvent)


def tracing_enabled() -> bool:
    return isinstance(trace.get_tracer_provider(), SdkTracerProvider)


class Observer:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def committed(self, changes: Sequence[Change]) -> None:
        metrics = telemetry.metrics
        ended: list[str] = []
        for change in changes:
            flow = change.after
            for event in change.events:
                kind = event_type(event)
                match event:
                    case FlowSubmitted():
                        metrics.flow_started()
                    case TaskDispatched(attempt=attempt, queue=queue) if attempt > 1:
                        metrics.task_retried(queue)
                    case TaskStarted(task=name):
                        task = flow.tasks[name]
                        latency = (
                            (event.at - task.dispatched_at).total_seconds()
                            if task.dispatched_at
                            else None
                        )
                        metrics.task_started(task.queue, latency)
                    case (
                        TaskSucceeded(task=name)
                        | TaskFailed(task=name)
                        | TaskAttemptFailed(task=name)
                    ):
                        task = flow.tasks[name]
                        duration = (
                            (event.at - task.started_at).total_seconds()
                            if task.started_at
                            else None
                        )
                        status = "succeeded" if kind == "task_succeeded" else "failed"
                        error = getattr(event, "error_type", None)
                        metrics.task_finished(task.queue, status, duration, error)
                    case TaskCancelled(task=name, attempt=attempt) if attempt > 0:
                        metrics.task_finished(
                            flow.tasks[name].queue, "cancelled", None, "cancelled"
                        )
                    case _:
                        pass
                if kind in TERMINAL_FLOW_EVENTS:
                    metrics.flow_finished(str(flow.status))
                    ended.append(flow.id)
        if ended and tracing_enabled():
            for flow_id in ended:
                try:
                    await self._emit_trace(flow_id)
                except Exception as exc:  # telemetry must never break the scheduler
                    log.warning(
                        "flow trace not emitted", extra={"flow_id": flow_id, "error": str(exc)}
                    )

    async def _emit_trace(self, flow_id: str) -> None:
        logged = await self.store.data.flow_events(flow_id)
        # Folding a big flow's log takes seconds (`flow_timeline` runs the decider's evolve
        # over every event): off the event loop, which goes on deciding meanwhile.
        await asyncio.to_thread(_emit_spans, logged)


def _emit_spans(logged: Sequence[str]) -> None:
    telemetry.emit_flow_spans([_event_decoder.decode(data) for data in logged])
