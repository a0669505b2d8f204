"""OTLP over HTTP from real service processes: the scheduler and the runner export to a
receiver in the test, and a flow arrives as one whole trace, even when the scheduler is
killed with -9 mid-flow (the flow's long spans are rebuilt from its events at its end)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from weir import telemetry
from weir.client import Client
from weir.devstack import Stack
from weir_proto.events import FlowEvent, TaskDispatched, TaskStarted, TaskSucceeded, event_type

from tests.e2e.conftest import FAST_FAILOVER, running_stack
from tests.flows import task
from tests.waiting import quiet_for

pytestmark = pytest.mark.slow

FLOW_TIMEOUT = 30.0
SPANS_TIMEOUT = 10.0
SETTLE = 0.5
"""Seconds to keep listening once the trace is complete, so late duplicates would show: no
event proves that none is coming, and the services export every 100 ms
(OTEL_BSP_SCHEDULE_DELAY below), so this is five export rounds."""
TOLERANCE_NS = 1_000_000


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    start_ns: int
    end_ns: int


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver: decodes every `POST /v1/traces` it is sent."""

    port: int = 0
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id,
                            span_id=span.span_id,
                            parent_span_id=span.parent_span_id,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                        )
                    )
        with self.lock:
            self.spans.extend(received)
            self.requests += 1

    def of_trace(self, trace_id: int) -> list[ReceivedSpan]:
        wanted = trace_id.to_bytes(16, "big")
        with self.lock:
            return [s for s in self.spans if s.trace_id == wanted]

    async def wait_for(
        self, trace_id: int, complete: Callable[[list[ReceivedSpan]], bool]
    ) -> list[ReceivedSpan]:
        """The trace's spans once `complete` holds for them (and SETTLE seconds more)."""
        deadline = time.monotonic() + SPANS_TIMEOUT
        while not complete(self.of_trace(trace_id)):
            if time.monotonic() > deadline:
                spans = self.of_trace(trace_id)
                pytest.fail(
                    f"trace {trace_id:032x} incomplete after {SPANS_TIMEOUT}s "
                    f"({self.requests} exports, errors {self.errors}): "
                    f"{sorted((s.service, s.name) for s in spans)}"
                )
            await asyncio.sleep(0.05)
        await quiet_for(SETTLE, "a duplicate span exported late")
        return self.of_trace(trace_id)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self._reply(404, b"")
                return
            try:
                receiver.add(body)
            except Exception as exc:  # a malformed export fails the test, not the thread
                receiver.errors.append(repr(exc))
                self._reply(400, b"")
                return
            self._reply(200, ExportTraceServiceResponse().SerializeToString())

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


R = TypeVar("R", bound=Receiver)


@contextlib.contextmanager
def serving(received: R) -> Iterator[R]:
    """`received` listening for OTLP/HTTP exports on a free port of the loopback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    received.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver()) as received:
        yield received


@pytest.fixture
def otlp_stack(tmp_path: Path, database_url: str, receiver: Receiver) -> Iterator[Stack]:
    """The scheduler and the runner as real processes exporting traces to `receiver`."""
    env = {
        **FAST_FAILOVER,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "",  # each service names itself
    }
    yield from running_stack(tmp_path, database_url, env)


def _span_id(value: int) -> bytes:
    return value.to_bytes(8, "big")


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1_000


def _named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


async def test_services_export_one_trace_over_otlp_http(
    otlp_stack: Stack, receiver: Receiver
) -> None:
    spec = {
        "name": "otlp",
        "tasks": [task("first", "true"), task("second", "true", depends=["first"])],
    }
    async with await Client.connect(otlp_stack.nats_url) as client:
        flow_id = await client.submit(spec)
        final = await asyncio.wait_for(client.wait(flow_id), FLOW_TIMEOUT)
    assert event_type(final) == "flow_succeeded"
    trace_id = telemetry.flow_trace_id(flow_id)
    flow_span_id = _span_id(telemetry.flow_span_id(flow_id))

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {s.name for s in spans}
        return {"flow otlp", "task first", "task second"} <= names and any(
            n.startswith("process weir.dispatch") for n in names
        )

    spans = await receiver.wait_for(trace_id, complete)

    assert {"weir-scheduler", "weir-runner"} <= {s.service for s in spans}
    (flow,) = _named(spans, "flow otlp")
    assert flow.service == "weir-scheduler"
    assert flow.span_id == flow_span_id
    assert flow.parent_span_id == b""
    for name in ("first", "second"):
        (task_span,) = _named(spans, f"task {name}")
        assert task_span.service == "weir-scheduler"
        assert task_span.parent_span_id == flow_span_id
        assert task_span.span_id == _span_id(telemetry.attempt_span_id(flow_id, name, 1))
    dispatch = [s for s in spans if s.name.startswith("process weir.dispatch")]
    assert len(dispatch) == 2, [s.name for s in dispatch]  # one per task
    for span in dispatch:
        assert span.service == "weir-runner"
        assert span.kind == ProtoSpan.SPAN_KIND_CONSUMER


async def _task_started(client: Client, flow_id: str, name: str) -> None:
    async for event in client.events(flow_id, follow=True):
        if isinstance(event, TaskStarted) and event.task == name:
            return


def sequential_flow(names: list[str]) -> dict[str, Any]:
    return {
        "name": "otlp-restart",
        "tasks": [
            task(n, "sleep", "0.3", depends=[names[i - 1]] if i else [])
            for i, n in enumerate(names)
        ],
    }


async def test_trace_is_whole_after_scheduler_kill_9(otlp_stack: Stack, receiver: Receiver) -> None:
    names = ["a", "b", "c", "d"]
    async with await Client.connect(otlp_stack.nats_url) as client:
        flow_id = await client.submit(sequential_flow(names))
        waiter = asyncio.create_task(client.wait(flow_id))
        await asyncio.wait_for(_task_started(client, flow_id, "b"), FLOW_TIMEOUT)  # mid-flow
        assert not waiter.done(), "the flow ended before the scheduler could be killed"
        killed = otlp_stack.scheduler
        assert killed is not None
        await asyncio.to_thread(otlp_stack.kill_scheduler)
        assert killed.returncode == -signal.SIGKILL
        await quiet_for(0.2, "the outage: the runner's reports wait in JetStream")
        await asyncio.to_thread(otlp_stack.start_scheduler)
        final = await asyncio.wait_for(waiter, FLOW_TIMEOUT)
        events: list[FlowEvent] = [e async for e in client.events(flow_id)]
    assert event_type(final) == "flow_succeeded"
    trace_id = telemetry.flow_trace_id(flow_id)
    flow_span_id = _span_id(telemetry.flow_span_id(flow_id))

    def complete(spans: list[ReceivedSpan]) -> bool:
        got = {s.name for s in spans}
        return "flow otlp-restart" in got and {f"task {n}" for n in names} <= got

    spans = await receiver.wait_for(trace_id, complete)

    flows = [s for s in spans if s.name.startswith("flow ")]
    assert len(flows) == 1, flows
    assert flows[0].span_id == flow_span_id
    assert {s.name for s in spans if s.name.startswith("task ")} == {f"task {n}" for n in names}

    dispatched = {e.task: e.at for e in events if isinstance(e, TaskDispatched) and e.attempt == 1}
    started = {e.task: e.at for e in events if isinstance(e, TaskStarted) and e.attempt == 1}
    succeeded = {e.task: e.at for e in events if isinstance(e, TaskSucceeded) and e.attempt == 1}
    assert set(succeeded) == set(names), "every task succeeds at its first attempt"
    for name in names:
        task_spans = _named(spans, f"task {name}")
        assert len(task_spans) == 1, f"task {name}: {len(task_spans)} spans"
        (task_span,) = task_spans
        attempt = _span_id(telemetry.attempt_span_id(flow_id, name, 1))
        assert task_span.span_id == attempt
        assert task_span.parent_span_id == flow_span_id
        # The task span runs from dispatch to the end; its `run` phase from the runner's start.
        assert abs(task_span.start_ns - _ns(dispatched[name])) <= TOLERANCE_NS
        assert abs(task_span.end_ns - _ns(succeeded[name])) <= TOLERANCE_NS
        (run,) = [s for s in _named(spans, "run") if s.parent_span_id == attempt]
        assert abs(run.start_ns - _ns(started[name])) <= TOLERANCE_NS
        assert abs(run.end_ns - _ns(succeeded[name])) <= TOLERANCE_NS
