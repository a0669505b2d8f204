"""W3C trace context (`traceparent`, `tracestate`) in NATS message headers."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

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
