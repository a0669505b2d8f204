"""Spans around publishing and receiving NATS messages (OpenTelemetry messaging semantic
conventions), carrying the trace on in the message headers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, TracerProvider
from weir_proto import subjects

from weir.telemetry.propagation import extract, inject
from weir.telemetry.providers import recording_tracer


def subject_template(subject: str) -> str:
    """The low-cardinality form of a weir subject: span names must not contain flow ids."""
    parts = subject.split(".")
    if subject.startswith(subjects.STATUS_PREFIX + ".") and len(parts) == 3:
        return f"{subjects.STATUS_PREFIX}.{{flow_id}}"
    if subject.startswith(subjects.EVENTS_PREFIX + ".") and len(parts) == 4:
        return f"{subjects.EVENTS_PREFIX}.{{flow_id}}.{parts[3]}"
    if subject.startswith(subjects.DISPATCH_PREFIX + ".") and len(parts) == 4:
        return f"{subjects.DISPATCH_PREFIX}.{parts[2]}.{{flow_id}}"
    if subjects.is_on_exit_dispatch(subject):
        return f"{subjects.DISPATCH_PREFIX}.{parts[2]}.{{flow_id}}.{subjects.ON_EXIT_TOKEN}"
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
    if message_id is not None and "Nats-Msg-Id" not in (headers or {}):
        headers = {**(headers or {}), "Nats-Msg-Id": message_id}
    recording = recording_tracer(provider)
    if recording is None:
        with _unrecorded(parent):
            yield inject(headers)
        return
    attrs = _messaging_attributes(subject, "publish", "send", message_id, size)
    attrs.update(attributes or {})
    span_name = f"publish {subject_template(subject)}"
    with recording.start_as_current_span(
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
    recording = recording_tracer(provider)
    if recording is None:
        with _unrecorded(parent) as span:
            yield span
        return
    attrs = _messaging_attributes(subject, operation, operation, message_id, size)
    attrs.update(attributes or {})
    span_name = f"{operation} {subject_template(subject)}"
    with recording.start_as_current_span(
        span_name, context=parent, kind=SpanKind.CONSUMER, attributes=attrs, links=links
    ) as span:
        yield span


@contextlib.contextmanager
def receiving_batch(
    messages: Iterable[tuple[str, Mapping[str, str] | None, int]],
) -> Iterator[None]:
    """CONSUMER spans of messages (subject, headers, size) handled together as one batch,
    only when a tracer records them: a batch has no one context to make current, and what
    its handling publishes carries each flow's own trace context."""
    if recording_tracer() is None:
        yield
        return
    with contextlib.ExitStack() as spans:
        for subject, headers, size in messages:
            spans.enter_context(receiving(subject, headers, size=size))
        yield


@contextlib.contextmanager
def _unrecorded(parent: Context | None) -> Iterator[Span]:
    """What starting a span does when no SDK provider records it (OpenTelemetry's no-op
    tracer), without building its name, attributes and links: the parent's span context
    becomes current, so what is published inside still carries the trace on."""
    span = trace.get_current_span(parent)
    if not isinstance(span, NonRecordingSpan):
        span = NonRecordingSpan(span.get_span_context())
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)
