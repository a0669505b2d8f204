"""Deterministic trace and span ids: a flow is one trace, whoever touches it and when.

Its trace id, the id of its root span and the id of every task attempt's span (and of the
attempt's phases) are derived from the flow id, task name and attempt number, so a span
started anywhere under `flow_context(flow_id)` or `attempt_context(...)` lands in the right
place, and a span emitted again after a restart keeps its id.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
)


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


def remote_parent(trace_id: int, span_id: int) -> Context:
    span_context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=_SAMPLED)
    return trace.set_span_in_context(NonRecordingSpan(span_context))


CONTEXT_CACHE_SIZE = 1024
"""Contexts of recent flows and attempts kept, so that the messages of one attempt (its
dispatch, reports, log lines) do not derive the same ids again."""


@functools.lru_cache(maxsize=CONTEXT_CACHE_SIZE)
def flow_context(flow_id: str) -> Context:
    """A context whose current span is the flow's root span: start spans in it (with
    `context=`) from any process and they join the flow's trace as children of the flow."""
    return remote_parent(flow_trace_id(flow_id), flow_span_id(flow_id))


@functools.lru_cache(maxsize=CONTEXT_CACHE_SIZE)
def attempt_context(flow_id: str, task: str, attempt: int) -> Context:
    """A context whose current span is one task attempt's span (runner-side work goes here)."""
    return remote_parent(flow_trace_id(flow_id), attempt_span_id(flow_id, task, attempt))


def traceparent(trace_id: int, span_id: int) -> str:
    """A W3C `traceparent` value (version 00, sampled)."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


@functools.lru_cache(maxsize=CONTEXT_CACHE_SIZE)
def flow_traceparent(flow_id: str) -> str:
    """The `traceparent` header of the flow's root span, as `inject(..., flow_context(flow_id))`
    writes it, built from one digest: the relay puts it on every event and dispatch (a
    flow's several in a row, hence the cache)."""
    digest = hashlib.sha256(flow_id.encode()).digest()
    trace_id = _nonzero(int.from_bytes(digest[:16], "big"))
    return traceparent(trace_id, _nonzero(int.from_bytes(digest[16:24], "big")))


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


def start_span_with_ids(
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
