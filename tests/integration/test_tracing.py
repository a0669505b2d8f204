"""One trace per flow: client submit, scheduler, runner, relay and the task process all land
in the flow's trace, and the flow's long spans carry their true times and attributes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from weir import telemetry
from weir.client import Client

from tests.conftest import Services
from tests.flows import shell, task

_exporter = InMemorySpanExporter()
_provider = telemetry.new_tracer_provider("weir-tests", SimpleSpanProcessor(_exporter))
trace.set_tracer_provider(_provider)


async def test_one_trace_links_client_scheduler_runner_and_task(
    services: Services, client: Client, tmp_path: Path
) -> None:
    _exporter.clear()
    seen = tmp_path / "traceparent"
    spec = {
        "name": "traced",
        "tasks": [
            shell("first", f'echo "$TRACEPARENT" > {seen}'),
            task("second", "true", depends=["first"]),
        ],
    }
    flow_id = await client.submit(spec)
    await asyncio.wait_for(client.wait(flow_id), 60)
    trace_id = telemetry.flow_trace_id(flow_id)

    async def flow_span_emitted() -> None:
        while not any(s.name.startswith("flow ") for s in _exporter.get_finished_spans()):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(flow_span_emitted(), 10)
    spans = [s for s in _exporter.get_finished_spans() if s.context.trace_id == trace_id]
    names = {s.name for s in spans}
    assert "publish weir.cmd.submit" in names  # client
    assert "process weir.cmd.submit" in names  # scheduler
    assert any(n.startswith("process weir.dispatch") for n in names)  # runner
    assert any(n.startswith("publish weir.status") for n in names)  # runner reports
    assert {"flow traced", "task first", "task second", "queue-wait", "run"} <= names
    kinds = {s.name: s.kind for s in spans}
    assert kinds["publish weir.cmd.submit"] is trace.SpanKind.PRODUCER
    assert kinds["process weir.cmd.submit"] is trace.SpanKind.CONSUMER
    first = next(s for s in spans if s.name == "task first")
    assert first.attributes is not None
    assert first.attributes[telemetry.ATTR_FLOW_ID] == flow_id
    assert first.attributes[telemetry.ATTR_ATTEMPT] == 1
    assert first.attributes[telemetry.ATTR_EXIT_CODE] == 0
    # The task process received the context of its attempt span.
    assert seen.read_text().strip() == telemetry.attempt_traceparent(flow_id, "first", 1)
    assert f"{trace_id:032x}" in seen.read_text()
