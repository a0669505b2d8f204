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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, assert_never

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from weir_proto import ids, subjects
from weir_proto.events import (
    FlowCancelled,
    FlowCancelRequested,
    FlowDeduplicated,
    FlowEvent,
    FlowFailed,
    FlowRejected,
    FlowSubmitted,
    FlowSucceeded,
    TaskAttemptFailed,
    TaskCancelled,
    TaskDispatched,
    TaskFailed,
    TaskQueued,
    TaskSkipped,
    TaskSnoozed,
    TaskStarted,
    TaskSucceeded,
    TaskTakenOver,
)

log = logging.getLogger("weir.telemetry")

INSTRUMENTATION_NAME = "weir"

# Span attributes ----------------------------------------------------------------------------

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

SPAN_FLOW = "flow"
SPAN_TASK = "task"
SPAN_QUEUE_WAIT = "queue-wait"
SPAN_RUN = "run"
"""Long-span names: `flow {name}`, `task {task}`, and the attempt's two phases."""

# Deterministic ids --------------------------------------------------------------------------


def _digest(*parts: str) -> bytes:
    # The unit separator cannot appear in a flow id or task name (both DNS-1123 labels).
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def _nonzero(value: int) -> int:
    return value or 1  # all-zero ids are invalid in W3C trace context


def flow_trace_id(flow_id: str) -> int:
    """The flow's trace id: the first 16 bytes of sha256(flow id)."""
    return _nonzero(int.from_bytes(hashlib.sha256(flow_id.encode()).digest()[:16], "big"))


def flow_trace_id_hex(flow_id: str) -> str:
    """The flow's trace id as tracing backends show it (32 hex digits): paste it into
    Grafana/Tempo to open the flow's trace."""
    return f"{flow_trace_id(flow_id):032x}"


def flow_span_id(flow_id: str) -> int:
    """The id of the flow's root span: bytes 16..24 of sha256(flow id)."""
    return _nonzero(int.from_bytes(hashlib.sha256(flow_id.encode()).digest()[16:24], "big"))


def attempt_span_id(flow_id: str, task: str, attempt: int) -> int:
    """The id of one task attempt's span: the first 8 bytes of sha256(flow, task, attempt)."""
    return _nonzero(int.from_bytes(_digest(flow_id, task, str(attempt))[:8], "big"))


def phase_span_id(flow_id: str, task: str, attempt: int, phase: str) -> int:
    """The id of an attempt's phase span (`queue-wait` or `run`)."""
    return _nonzero(int.from_bytes(_digest(flow_id, task, str(attempt), phase)[:8], "big"))


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _remote_parent(trace_id: int, span_id: int) -> Context:
    span_context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=_SAMPLED)
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def flow_context(flow_id: str) -> Context:
    """A context whose current span is the flow's root span: start spans in it (with
    `context=`) from any process and they join the flow's trace as children of the flow."""
    return _remote_parent(flow_trace_id(flow_id), flow_span_id(flow_id))


def attempt_context(flow_id: str, task: str, attempt: int) -> Context:
    """A context whose current span is one task attempt's span (runner-side work goes here)."""
    return _remote_parent(flow_trace_id(flow_id), attempt_span_id(flow_id, task, attempt))


def traceparent(trace_id: int, span_id: int) -> str:
    """A W3C `traceparent` value (version 00, sampled)."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def attempt_traceparent(flow_id: str, task: str, attempt: int) -> str:
    """What a task process receives as `TRACEPARENT`: its spans become children of its
    attempt's span."""
    return traceparent(flow_trace_id(flow_id), attempt_span_id(flow_id, task, attempt))


class FlowIdGenerator(IdGenerator):
    """Random ids, except while `_forced_ids` holds the ids of a span being emitted.

    The SDK asks its id generator for a span's ids; this is how a span gets the id derived
    from its flow rather than a random one. `setup` installs it.
    """

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        forced = _forced_ids.get()
        return forced[1] if forced else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        forced = _forced_ids.get()
        return forced[0] if forced else self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return False  # trace ids are derived from flow ids (W3C level 2 "random" flag off)


_forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("weir_forced_ids", default=None)


def _start_span_with_ids(
    tracer: Tracer,
    name: str,
    *,
    trace_id: int,
    span_id: int,
    parent: Context | None,
    start_ns: int,
    attributes: Mapping[str, str | int],
    kind: SpanKind = SpanKind.INTERNAL,
) -> Span:
    token = _forced_ids.set((trace_id, span_id))
    try:
        return tracer.start_span(
            name, context=parent or Context(), kind=kind, attributes=attributes, start_time=start_ns
        )
    finally:
        _forced_ids.reset(token)


# Setup --------------------------------------------------------------------------------------

_OTLP_PROTOCOLS_INSTALLED = ("http/protobuf",)


@dataclass(frozen=True)
class ExportPlan:
    """Which exporters the environment asks for (`otlp`, `console`), per signal."""

    traces: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.traces or self.metrics)


def _exporters(env: Mapping[str, str], signal: str) -> tuple[str, ...]:
    names = env.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip()
    if not names:
        # The spec's default is `otlp`; ours is to export only where an endpoint was given,
        # so a laptop without a collector does not log connection errors forever.
        endpoint = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ("otlp",) if endpoint else ()
    chosen: list[str] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("otlp", "console") and name not in chosen:
            chosen.append(name)
        elif name != "none":
            log.warning("OTEL_%s_EXPORTER: %r is not supported (otlp, console, none)", signal, name)
    return tuple(chosen)


def export_plan(env: Mapping[str, str] | None = None) -> ExportPlan:
    """Read `OTEL_SDK_DISABLED`, `OTEL_{TRACES,METRICS}_EXPORTER` and the OTLP endpoints."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ExportPlan()
    return ExportPlan(traces=_exporters(env, "traces"), metrics=_exporters(env, "metrics"))


def resource(service_name: str, env: Mapping[str, str] | None = None) -> Resource:
    """`service.name` (overridden by `OTEL_SERVICE_NAME`) plus `OTEL_RESOURCE_ATTRIBUTES`."""
    env = os.environ if env is None else env
    name = env.get("OTEL_SERVICE_NAME") or service_name
    return Resource.create({"service.name": name})


def new_tracer_provider(
    service_name: str, *processors: SpanProcessor, env: Mapping[str, str] | None = None
) -> SdkTracerProvider:
    """An SDK tracer provider that can give spans their flow-derived ids (tests use it with
    an in-memory exporter; `setup` with the exporters the environment asks for)."""
    provider = SdkTracerProvider(
        resource=resource(service_name, env), id_generator=FlowIdGenerator()
    )
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


@dataclass
class _Installed:
    tracer_provider: SdkTracerProvider | None = None
    meter_provider: SdkMeterProvider | None = None


_installed = _Installed()


def setup(service_name: str, env: Mapping[str, str] | None = None) -> ExportPlan:
    """Install global tracer and meter providers exporting where the environment says.

    Call once at process start (OpenTelemetry refuses to replace a global provider). With no
    `OTEL_*` exporter or endpoint set nothing is installed: spans are no-ops that still carry
    the flow's trace context on to NATS headers and task processes. Only OTLP over
    http/protobuf is installed; `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` is reported and ignored.
    """
    env = os.environ if env is None else env
    plan = export_plan(env)
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if plan.enabled and protocol not in _OTLP_PROTOCOLS_INSTALLED:
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not installed; using http/protobuf", protocol
        )
    if plan.traces:
        processors = [BatchSpanProcessor(_span_exporter(name)) for name in plan.traces]
        tracer_provider = new_tracer_provider(service_name, *processors, env=env)
        trace.set_tracer_provider(tracer_provider)
        _installed.tracer_provider = tracer_provider
    if plan.metrics:
        readers: list[MetricReader] = [
            PeriodicExportingMetricReader(_metric_exporter(name)) for name in plan.metrics
        ]
        meter_provider = SdkMeterProvider(
            resource=resource(service_name, env), metric_readers=readers
        )
        otel_metrics.set_meter_provider(meter_provider)
        _installed.meter_provider = meter_provider
    if plan.enabled:
        log.info(
            "telemetry exporting",
            extra={"traces": ",".join(plan.traces), "metrics": ",".join(plan.metrics)},
        )
    return plan


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, TLS: from OTEL_EXPORTER_OTLP_*


def _metric_exporter(name: str) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def shutdown() -> None:
    """Flush and stop what `setup` installed (spans and a last metrics export)."""
    if _installed.tracer_provider is not None:
        _installed.tracer_provider.shutdown()
        _installed.tracer_provider = None
    if _installed.meter_provider is not None:
        _installed.meter_provider.shutdown()
        _installed.meter_provider = None


def tracer(provider: TracerProvider | None = None) -> Tracer:
    """weir's tracer, from `provider` or the global one."""
    return trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=provider)


# Propagation over NATS headers --------------------------------------------------------------

_propagator = TraceContextTextMapPropagator()


def inject(
    headers: Mapping[str, str] | None = None, context: Context | None = None
) -> dict[str, str]:
    """`headers` plus `traceparent` (and `tracestate`) of `context` or the current span.

    Returns a new dict; a context without a valid span adds nothing.
    """
    carrier = dict(headers or {})
    _propagator.inject(carrier, context=context)
    return carrier


def extract(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message carries (an empty context when it carries none)."""
    return _propagator.extract(dict(headers or {}))


# Messaging spans (OpenTelemetry messaging semantic conventions) ------------------------------


def subject_template(subject: str) -> str:
    """The low-cardinality form of a weir subject: span names must not contain flow ids."""
    parts = subject.split(".")
    if subject.startswith(subjects.STATUS_PREFIX + ".") and len(parts) == 3:
        return f"{subjects.STATUS_PREFIX}.{{flow_id}}"
    if subject.startswith(subjects.EVENTS_PREFIX + ".") and len(parts) == 4:
        return f"{subjects.EVENTS_PREFIX}.{{flow_id}}.{parts[3]}"
    if subject.startswith(subjects.DISPATCH_PREFIX + ".") and len(parts) == 4:
        return f"{subjects.DISPATCH_PREFIX}.{parts[2]}.{{flow_id}}"
    return subject


def _messaging_attributes(
    subject: str, operation: str, operation_type: str, message_id: str | None, size: int | None
) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.name": operation,
        "messaging.operation.type": operation_type,
    }
    template = subject_template(subject)
    if template != subject:
        attributes["messaging.destination.template"] = template
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    if size is not None:
        attributes["messaging.message.body.size"] = size
    return attributes


@contextlib.contextmanager
def publishing(
    subject: str,
    headers: Mapping[str, str] | None = None,
    *,
    message_id: str | None = None,
    parent: Context | None = None,
    size: int | None = None,
    attributes: Mapping[str, str | int] | None = None,
    provider: TracerProvider | None = None,
) -> Iterator[dict[str, str]]:
    """A PRODUCER span `publish {subject}`; yields `headers` with its `traceparent` added.

    Publish with the yielded headers inside the block, so the receiver's span is a child of
    this one. `parent` defaults to the current context (pass `flow_context(flow_id)` where
    there is none, e.g. the client's submit or the relay).
    """
    attrs = _messaging_attributes(subject, "publish", "send", message_id, size)
    attrs.update(attributes or {})
    if message_id is not None and "Nats-Msg-Id" not in (headers or {}):
        headers = {**(headers or {}), "Nats-Msg-Id": message_id}
    span_name = f"publish {subject_template(subject)}"
    with tracer(provider).start_as_current_span(
        span_name, context=parent, kind=SpanKind.PRODUCER, attributes=attrs
    ):
        yield inject(headers)


@contextlib.contextmanager
def receiving(
    subject: str,
    headers: Mapping[str, str] | None,
    *,
    message_id: str | None = None,
    operation: Literal["process", "receive"] = "process",
    parent: Context | None = None,
    fallback: Context | None = None,
    size: int | None = None,
    attributes: Mapping[str, str | int] | None = None,
    provider: TracerProvider | None = None,
) -> Iterator[Span]:
    """A CONSUMER span `process {subject}`, current inside the block.

    Its parent is the context the message carries, or `fallback` (e.g.
    `flow_context(flow_id)`) when it carries none. Pass `parent` to put the span in a
    trace of your choosing instead (a submit whose flow id the client did not know); the
    message's own context then becomes a link. Exceptions escaping the block are recorded
    and set the span's status to error.
    """
    carried = extract(headers)
    carried_span = trace.get_current_span(carried).get_span_context()
    links: list[trace.Link] = []
    if parent is not None:
        if carried_span.is_valid:
            links.append(trace.Link(carried_span))
    elif carried_span.is_valid:
        parent = carried
    else:
        parent = fallback or Context()
    attrs = _messaging_attributes(subject, operation, operation, message_id, size)
    attrs.update(attributes or {})
    span_name = f"{operation} {subject_template(subject)}"
    with tracer(provider).start_as_current_span(
        span_name, context=parent, kind=SpanKind.CONSUMER, attributes=attrs, links=links
    ) as span:
        yield span


# Flow timelines from events -----------------------------------------------------------------

AttemptStatus = Literal["dispatched", "running", "succeeded", "failed", "snoozed", "cancelled"]
ATTEMPT_ENDED: frozenset[AttemptStatus] = frozenset({"succeeded", "failed", "snoozed", "cancelled"})


@dataclass(frozen=True)
class Attempt:
    """One task attempt as the events tell it (the scheduler's task state has the same facts)."""

    flow_id: str
    task: str
    attempt: int
    queue: str = subjects.DEFAULT_QUEUE
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status: AttemptStatus = "dispatched"
    exit_code: int | None = None
    error_type: str | None = None
    message: str = ""
    runner: str = ""

    @property
    def finished(self) -> bool:
        return self.status in ATTEMPT_ENDED

    @property
    def queue_wait_s(self) -> float | None:
        """Dispatched until started (or until it failed without starting)."""
        end = self.started_at or self.finished_at
        if self.dispatched_at is None or end is None:
            return None
        return (end - self.dispatched_at).total_seconds()

    @property
    def run_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Skip:
    task: str
    reason: str
    at: datetime


FlowStatus = Literal[
    "pending", "running", "succeeded", "failed", "cancelled", "rejected", "duplicate"
]
FLOW_ENDED: frozenset[FlowStatus] = frozenset(
    {"succeeded", "failed", "cancelled", "rejected", "duplicate"}
)


@dataclass(frozen=True)
class FlowTimeline:
    flow_id: str
    name: str = ""
    status: FlowStatus = "pending"
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: tuple[Attempt, ...] = ()
    """In order of dispatch."""
    skipped: tuple[Skip, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in FLOW_ENDED

    def attempt(self, task: str, attempt: int) -> Attempt | None:
        return next((a for a in self.attempts if (a.task, a.attempt) == (task, attempt)), None)


@dataclass
class _Builder:
    timeline: FlowTimeline
    attempts: dict[tuple[str, int], Attempt] = field(default_factory=dict)

    def update(self, task: str, attempt: int, **changes: object) -> None:
        key = (task, attempt)
        current = self.attempts.get(key) or Attempt(self.timeline.flow_id, task, attempt)
        self.attempts[key] = replace(current, **changes)  # type: ignore[arg-type]


def flow_timeline(events: Iterable[FlowEvent]) -> FlowTimeline:
    """Fold a flow's events (in `seq` order) into its attempts, skips and status."""
    events = list(events)
    if not events:
        raise ValueError("a flow timeline needs at least one event")
    b = _Builder(FlowTimeline(events[0].flow_id))
    t = b.timeline
    skipped: list[Skip] = []
    for event in events:
        match event:
            case FlowSubmitted(spec=spec, at=at):
                t = replace(t, name=spec.name, status="running", submitted_at=at)
            case FlowRejected(name=name, at=at):
                t = replace(
                    t,
                    name=name or t.name,
                    status="rejected",
                    submitted_at=t.submitted_at or at,
                    finished_at=at,
                )
            case TaskDispatched(task=task, attempt=n, queue=queue, at=at):
                b.update(task, n, queue=queue, dispatched_at=at, status="dispatched")
            case TaskStarted(task=task, attempt=n, runner=runner, at=at):
                b.update(task, n, started_at=at, runner=runner, status="running")
            case TaskTakenOver(task=task, attempt=n, runner=runner):
                b.update(task, n, runner=runner)  # the attempt runs on, on another runner
            case TaskSucceeded(task=task, attempt=n, exit_code=code, at=at):
                b.update(task, n, finished_at=at, exit_code=code, status="succeeded")
            case (
                TaskFailed(task=task, attempt=n, at=at)
                | TaskAttemptFailed(task=task, attempt=n, at=at)
            ):
                # TaskAttemptFailed: this attempt failed and another is due (a retry).
                b.update(
                    task,
                    n,
                    finished_at=at,
                    exit_code=event.exit_code,
                    error_type=event.error_type,
                    message=event.message,
                    status="failed",
                )
            case TaskSnoozed(task=task, attempt=n, at=at):
                b.update(task, n, finished_at=at, status="snoozed")
            case TaskCancelled(task=task, attempt=n, reason=reason, at=at):
                if (task, n) in b.attempts and not b.attempts[task, n].finished:
                    b.update(task, n, finished_at=at, status="cancelled", message=reason)
                else:
                    skipped.append(Skip(task, f"cancelled: {reason}", at))
            case TaskSkipped(task=task, reason=reason, at=at):
                skipped.append(Skip(task, reason, at))
            case FlowSucceeded(at=at):
                t = replace(t, status="succeeded", finished_at=at)
            case FlowFailed(at=at):
                t = replace(t, status="failed", finished_at=at)
            case FlowCancelRequested():
                pass  # the attempts' own events say when they were stopped
            case TaskQueued():
                pass  # waiting for queue capacity; the attempt begins at its dispatch
            case FlowCancelled(at=at):
                t = replace(t, status="cancelled", finished_at=at)
            case FlowDeduplicated(name=name, at=at):
                t = replace(
                    t,
                    name=name or t.name,
                    status="duplicate",
                    submitted_at=t.submitted_at or at,
                    finished_at=at,
                )
            case _ as unreachable:
                assert_never(unreachable)
    return replace(t, attempts=tuple(b.attempts.values()), skipped=tuple(skipped))


# Long spans from the timeline ---------------------------------------------------------------


def _ns(at: datetime) -> int:
    # Exact integer arithmetic: a float timestamp would lose microseconds.
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1_000


def attempt_attributes(attempt: Attempt) -> dict[str, str | int]:
    attrs: dict[str, str | int] = {
        ATTR_FLOW_ID: attempt.flow_id,
        ATTR_TASK: attempt.task,
        ATTR_ATTEMPT: attempt.attempt,
        ATTR_ATTEMPT_ID: ids.attempt_id(attempt.flow_id, attempt.task, attempt.attempt),
        ATTR_QUEUE: attempt.queue,
        ATTR_TASK_STATUS: attempt.status,
    }
    if attempt.runner:
        attrs[ATTR_RUNNER] = attempt.runner
    if attempt.exit_code is not None:
        attrs[ATTR_EXIT_CODE] = attempt.exit_code
    if attempt.error_type:
        attrs[ATTR_ERROR_TYPE] = attempt.error_type
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
    span = _start_span_with_ids(
        tr,
        f"{SPAN_TASK} {attempt.task}",
        trace_id=trace_id,
        span_id=span_id,
        parent=flow_context(attempt.flow_id),
        start_ns=_ns(start),
        attributes=attrs,
    )
    if attempt.status == "failed":
        span.set_status(Status(StatusCode.ERROR, f"{attempt.error_type}: {attempt.message}"[:512]))
    elif attempt.status == "cancelled":
        span.set_status(Status(StatusCode.ERROR, f"cancelled: {attempt.message}"[:512]))
    emitted = 1
    parent = _remote_parent(trace_id, span_id)
    phase_attrs = {k: attrs[k] for k in (ATTR_FLOW_ID, ATTR_TASK, ATTR_ATTEMPT, ATTR_QUEUE)}
    phases: list[tuple[str, datetime, datetime]] = []
    if attempt.dispatched_at is not None:
        phases.append(
            (SPAN_QUEUE_WAIT, attempt.dispatched_at, attempt.started_at or attempt.finished_at)
        )
    if attempt.started_at is not None:
        phases.append((SPAN_RUN, attempt.started_at, attempt.finished_at))
    for phase, begin, finish in phases:
        child = _start_span_with_ids(
            tr,
            phase,
            trace_id=trace_id,
            span_id=phase_span_id(attempt.flow_id, attempt.task, attempt.attempt, phase),
            parent=parent,
            start_ns=_ns(begin),
            attributes=phase_attrs,
        )
        if phase == SPAN_RUN and attempt.status == "failed":
            child.set_status(Status(StatusCode.ERROR))
        child.end(end_time=_ns(finish))
        emitted += 1
    span.end(end_time=end_ns)
    return emitted


def emit_flow_span(timeline: FlowTimeline, provider: TracerProvider | None = None) -> int:
    """Emit the flow's root span `flow {name}` from submit to its terminal event, with an
    event per skipped task. Only a finished flow is emitted; returns spans emitted (0 or 1)."""
    if not timeline.finished or timeline.finished_at is None:
        return 0
    start = timeline.submitted_at or timeline.finished_at
    attrs: dict[str, str | int] = {
        ATTR_FLOW_ID: timeline.flow_id,
        ATTR_FLOW_STATUS: timeline.status,
    }
    if timeline.name:
        attrs[ATTR_FLOW_NAME] = timeline.name
    span = _start_span_with_ids(
        tracer(provider),
        f"{SPAN_FLOW} {timeline.name or timeline.flow_id}",
        trace_id=flow_trace_id(timeline.flow_id),
        span_id=flow_span_id(timeline.flow_id),
        parent=None,
        start_ns=_ns(start),
        attributes=attrs,
    )
    for skip in timeline.skipped:
        span.add_event(
            "task_skipped",
            {ATTR_TASK: skip.task, ATTR_SKIP_REASON: skip.reason},
            timestamp=_ns(skip.at),
        )
    if timeline.status not in ("succeeded", "duplicate"):
        span.set_status(Status(StatusCode.ERROR, timeline.status))
    span.end(end_time=_ns(timeline.finished_at))
    return 1


def emit_flow_spans(events: Iterable[FlowEvent], provider: TracerProvider | None = None) -> int:
    """Emit every finished attempt's spans and, if the flow is finished, the flow span: the
    whole trace of a flow at once (e.g. when it ends, or to re-export an old flow)."""
    timeline = flow_timeline(events)
    count = sum(emit_attempt_spans(a, provider) for a in timeline.attempts)
    return count + emit_flow_span(timeline, provider)


# Metrics ------------------------------------------------------------------------------------

InstrumentKind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True)
class MetricName:
    """One instrument: its OpenTelemetry name, unit and kind, and the series Prometheus shows."""

    name: str
    kind: InstrumentKind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()

    @property
    def prometheus(self) -> str:
        """The metric name after the collector's Prometheus exporter: dots become
        underscores, the unit becomes a suffix, counters end in `_total`."""
        base = self.name.replace(".", "_")
        suffix = {"s": "_seconds", "By": "_bytes"}.get(self.unit, "")
        if suffix and not base.endswith(suffix):
            base += suffix
        return base + "_total" if self.kind == "counter" else base

    @property
    def prometheus_series(self) -> tuple[str, ...]:
        if self.kind == "histogram":
            return tuple(self.prometheus + s for s in ("_bucket", "_sum", "_count"))
        return (self.prometheus,)


LABEL_QUEUE = "queue"
LABEL_STATUS = "status"
LABEL_ERROR_TYPE = "error_type"
LABEL_KIND = "kind"

FLOWS_STARTED = MetricName("weir.flows.started", "counter", "{flow}", "Flows accepted")
FLOWS_FINISHED = MetricName(
    "weir.flows.finished",
    "counter",
    "{flow}",
    "Flows that ended, by status (succeeded, failed, rejected)",
    (LABEL_STATUS,),
)
TASKS_STARTED = MetricName(
    "weir.tasks.started", "counter", "{attempt}", "Task attempts a runner started", (LABEL_QUEUE,)
)
TASKS_FINISHED = MetricName(
    "weir.tasks.finished",
    "counter",
    "{attempt}",
    "Task attempts that ended, by status (succeeded, failed) and error type",
    (LABEL_QUEUE, LABEL_STATUS, LABEL_ERROR_TYPE),
)
TASK_RETRIES = MetricName(
    "weir.task.retries", "counter", "{attempt}", "Attempts after the first", (LABEL_QUEUE,)
)
TASK_LOST = MetricName(
    "weir.task.lost",
    "counter",
    "{attempt}",
    "Attempts whose runner vanished (failed with error type lost)",
    (LABEL_QUEUE,),
)
DISPATCH_LATENCY = MetricName(
    "weir.task.dispatch_latency",
    "histogram",
    "s",
    "From a task being ready (dispatched) until a runner started it",
    (LABEL_QUEUE,),
)
TASK_DURATION = MetricName(
    "weir.task.duration",
    "histogram",
    "s",
    "From start to end of a task attempt",
    (LABEL_QUEUE, LABEL_STATUS),
)
RELAY_LAG = MetricName(
    "weir.relay.lag",
    "histogram",
    "s",
    "From an outbox row's commit until the relay published it",
    (LABEL_KIND,),
)
QUEUE_DEPTH = MetricName(
    "weir.queue.depth",
    "gauge",
    "{attempt}",
    "Dispatches waiting for a runner, per queue",
    (LABEL_QUEUE,),
)

METRICS: tuple[MetricName, ...] = (
    FLOWS_STARTED,
    FLOWS_FINISHED,
    TASKS_STARTED,
    TASKS_FINISHED,
    TASK_RETRIES,
    TASK_LOST,
    DISPATCH_LATENCY,
    TASK_DURATION,
    RELAY_LAG,
    QUEUE_DEPTH,
)
"""Every instrument weir records: code and dashboards both use this table."""

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS_S = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600)

QueueDepths = Callable[[], Mapping[str, int]]
"""Returns the current depth of each queue. Called on the metrics exporter's thread at each
export: it must not block or touch the event loop; return numbers the service cached."""


class Metrics:
    """The instruments, with one method per fact a service knows.

    Built on the global meter provider by default, so the module-level `metrics` works
    whether it is used before or after `setup` (and is a no-op without it).
    """

    def __init__(self, provider: MeterProvider | None = None) -> None:
        meter: Meter = otel_metrics.get_meter(INSTRUMENTATION_NAME, meter_provider=provider)
        c = FLOWS_STARTED
        self._flows_started = meter.create_counter(c.name, c.unit, c.description)
        c = FLOWS_FINISHED
        self._flows_finished = meter.create_counter(c.name, c.unit, c.description)
        c = TASKS_STARTED
        self._tasks_started = meter.create_counter(c.name, c.unit, c.description)
        c = TASKS_FINISHED
        self._tasks_finished = meter.create_counter(c.name, c.unit, c.description)
        c = TASK_RETRIES
        self._retries = meter.create_counter(c.name, c.unit, c.description)
        c = TASK_LOST
        self._lost = meter.create_counter(c.name, c.unit, c.description)
        h = DISPATCH_LATENCY
        self._dispatch_latency = meter.create_histogram(
            h.name, h.unit, h.description, explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S
        )
        h = TASK_DURATION
        self._task_duration = meter.create_histogram(
            h.name, h.unit, h.description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S
        )
        h = RELAY_LAG
        self._relay_lag = meter.create_histogram(
            h.name, h.unit, h.description, explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S
        )
        self._queue_depths: list[QueueDepths] = []
        g = QUEUE_DEPTH
        meter.create_observable_gauge(g.name, [self._observe_queue_depth], g.unit, g.description)

    def flow_started(self) -> None:
        """A submit became a flow (not counted again on a duplicate submit)."""
        self._flows_started.add(1)

    def flow_finished(self, status: str) -> None:
        """`succeeded`, `failed` or `rejected`."""
        self._flows_finished.add(1, {LABEL_STATUS: status})

    def task_retried(self, queue: str) -> None:
        """An attempt after the first was dispatched."""
        self._retries.add(1, {LABEL_QUEUE: queue})

    def task_started(self, queue: str, dispatch_latency_s: float | None = None) -> None:
        """A runner started an attempt; `dispatch_latency_s` is `task_started.at` minus
        `task_dispatched.at` (the moment the task was ready)."""
        self._tasks_started.add(1, {LABEL_QUEUE: queue})
        if dispatch_latency_s is not None:
            self._dispatch_latency.record(max(dispatch_latency_s, 0.0), {LABEL_QUEUE: queue})

    def task_finished(
        self,
        queue: str,
        status: str,
        duration_s: float | None = None,
        error_type: str | None = None,
    ) -> None:
        """An attempt ended: `status` is `succeeded` or `failed`; `duration_s` runs from
        `task_started.at` (None if it never started). Error type `lost` also counts as lost."""
        self._tasks_finished.add(
            1, {LABEL_QUEUE: queue, LABEL_STATUS: status, LABEL_ERROR_TYPE: error_type or ""}
        )
        if duration_s is not None:
            self._task_duration.record(
                max(duration_s, 0.0), {LABEL_QUEUE: queue, LABEL_STATUS: status}
            )
        if error_type == "lost":
            self._lost.add(1, {LABEL_QUEUE: queue})

    def relay_published(self, kind: str, lag_s: float) -> None:
        """The relay published an outbox row (`kind`: `event` or `dispatch`) `lag_s` seconds
        after it was committed."""
        self._relay_lag.record(max(lag_s, 0.0), {LABEL_KIND: kind})

    def observe_queue_depth(self, depths: QueueDepths) -> None:
        """Report queue depths with `depths` (see `QueueDepths`) at every export."""
        self._queue_depths.append(depths)

    def _observe_queue_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        observations: list[Observation] = []
        for depths in self._queue_depths:
            try:
                current = dict(depths())
            except Exception:  # a failing callback must not break the whole export
                log.exception("queue depth callback failed")
                continue
            observations.extend(Observation(n, {LABEL_QUEUE: q}) for q, n in current.items())
        return observations


metrics = Metrics()
"""The process's instruments on the global meter provider."""


def metric_names() -> frozenset[str]:
    """Every series name Prometheus can hold for weir (dashboards may use only these)."""
    return frozenset(s for m in METRICS for s in m.prometheus_series)


__all__ = (
    "METRICS",
    "SPAN_ATTRIBUTES",
    "Attempt",
    "FlowIdGenerator",
    "FlowTimeline",
    "Metrics",
    "attempt_context",
    "attempt_span_id",
    "attempt_traceparent",
    "emit_attempt_spans",
    "emit_flow_span",
    "emit_flow_spans",
    "extract",
    "flow_context",
    "flow_span_id",
    "flow_timeline",
    "flow_trace_id",
    "flow_trace_id_hex",
    "inject",
    "metric_names",
    "metrics",
    "new_tracer_provider",
    "publishing",
    "receiving",
    "setup",
    "shutdown",
)
