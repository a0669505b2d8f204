"""The flow list's live feed: `GET /api/v1/flows` with `Accept: text/event-stream` pushes each
flow whose status may have changed, fed from the scheduler's event subjects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
from weir_proto.events import TERMINAL_FLOW_EVENTS, FlowEvent
from weir_proto.status import FlowStatus, flow_status_after
from weir_web.changes import (
    EVENT_TYPES,
    FOLLOWER_PENDING_MAX,
    STATUS_EVENTS,
    STEADY_EVENTS,
    Change,
    Follower,
    change_of,
)

from tests.web.conftest import Web
from tests.web.sse import Sse, read_sse
from tests.web.test_api import gated, submit

SSE = {"Accept": "text/event-stream"}
PUSH_TIMEOUT = 60.0


async def changes_of(frames: AsyncIterator[Sse], flow_id: str, until: str) -> list[str]:
    """The types of the changes pushed for `flow_id`, up to one of type `until` (or terminal)."""
    seen: list[str] = []
    async with asyncio.timeout(PUSH_TIMEOUT):
        async for frame in frames:
            assert frame.event in {"change", "resync"}, frame
            if frame.event == "change":
                change = frame.json()
                assert change["type"] in STATUS_EVENTS, change
                if change["flow_id"] == flow_id:
                    seen.append(change["type"])
                    if change["type"] == until or change["type"] in TERMINAL_FLOW_EVENTS:
                        return seen
    raise AssertionError(f"the stream ended after {seen}")


async def status_in_list(http: httpx.AsyncClient, flow_id: str) -> str:
    page = (await http.get("/flows")).json()
    found: list[str] = [f["status"] for f in page["flows"] if f["id"] == flow_id]
    assert found, f"{flow_id} not in the list"
    return found[0]


async def test_the_list_stream_pushes_a_new_flow_and_each_status_change(
    web: Web, tmp_path: Path
) -> None:
    viewer, operator = web.client("viewer"), web.client("operator")
    spec, gate = gated(tmp_path, "pushed")
    async with viewer.stream("GET", "/flows", headers=SSE) as response:
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        frames = read_sse(response)
        assert (await anext(frames)).event == "ready"  # live from here on
        flow_id = await submit(operator, spec)
        started = await changes_of(frames, flow_id, until="task_started")
        assert started[-1] == "task_started", started
        # Each push stands for a change the list already shows: no polling needed.
        assert await status_in_list(viewer, flow_id) == "running"
        gate.touch()
        ended = await changes_of(frames, flow_id, until="flow_succeeded")
        assert ended[-1] == "flow_succeeded", ended
        assert await status_in_list(viewer, flow_id) == "succeeded"


async def test_the_list_stream_pushes_a_pause_and_a_resume(web: Web, tmp_path: Path) -> None:
    viewer, operator = web.client("viewer"), web.client("operator")
    spec, gate = gated(tmp_path, "stepped")
    async with viewer.stream("GET", "/flows", headers=SSE) as response:
        frames = read_sse(response)
        assert (await anext(frames)).event == "ready"
        flow_id = await submit(operator, spec)
        await changes_of(frames, flow_id, until="task_started")
        assert (await operator.post(f"/flows/{flow_id}/pause", json={})).status_code == 200
        assert (await changes_of(frames, flow_id, until="flow_paused"))[-1] == "flow_paused"
        assert await status_in_list(viewer, flow_id) == "paused"
        assert (await operator.post(f"/flows/{flow_id}/resume")).status_code == 200
        assert (await changes_of(frames, flow_id, until="flow_resumed"))[-1] == "flow_resumed"
        assert await status_in_list(viewer, flow_id) == "running"
        gate.touch()


async def test_the_list_stream_needs_a_reader_and_writes_nothing(web: Web) -> None:
    anonymous = web.client()
    async with anonymous.stream("GET", "/flows", headers=SSE) as response:
        assert response.status_code == 401
        assert (await response.aread()).startswith(b'{"error"')
    # Following (and leaving) creates no flow and leaves no consumer of weir-web's behind.
    viewer = web.client("viewer")
    before = (await viewer.get("/flows")).json()["flows"]
    async with viewer.stream("GET", "/flows", headers=SSE) as response:
        assert (await anext(read_sse(response))).event == "ready"
    assert (await viewer.get("/flows")).json()["flows"] == before


def test_only_status_events_of_valid_flow_ids_become_changes() -> None:
    assert change_of("weir.events.etl-7.task_started") == Change("etl-7", "task_started")
    assert change_of("weir.events.etl-7.flow_succeeded") == Change("etl-7", "flow_succeeded")
    assert change_of("weir.events.etl-7.task_succeeded") is None  # no flow status change
    assert change_of("weir.events.Bad_Id.flow_failed") is None
    assert change_of("weir.status.etl-7.flow_failed") is None
    assert change_of("xweir.events.etl-7.flow_failed") is None


STEADY_FIELDS = {
    "id": "e1",
    "flow_id": "f",
    "seq": 2,
    "at": "2026-12-01T00:00:00Z",
    "task": "a",
    "attempt": 1,
    "runner": "r2",
    "previous_runner": "r1",
    "silent_for": 9.0,
    "error_type": "exit",
    "message": "m",
    "retry_at": "2026-12-01T00:01:00Z",
    "until": "2026-12-01T00:01:00Z",
    "reason": "r",
    "count": 2,
}
"""A value for every required field of the steady events."""


def test_the_steady_events_change_no_flow_status_and_every_other_type_is_pushed() -> None:
    assert STEADY_EVENTS < EVENT_TYPES and STATUS_EVENTS == EVENT_TYPES - STEADY_EVENTS
    assert {"flow_paused", "flow_resumed", "task_retried", "flow_updated"} <= STATUS_EVENTS
    for kind in STEADY_EVENTS:
        event = msgspec.convert({**STEADY_FIELDS, "type": kind}, FlowEvent)
        for status in FlowStatus:
            assert flow_status_after(status, event) is status, (kind, status)


async def test_a_follower_coalesces_per_flow_and_overflows_to_one_resync() -> None:
    follower = Follower()
    batches = follower.batches()
    follower.offer(Change("a", "flow_submitted"))
    follower.offer(Change("a", "task_started"))
    follower.offer(Change("b", "flow_submitted"))
    batch = await anext(batches)
    assert batch.changes == (Change("a", "task_started"), Change("b", "flow_submitted"))
    assert not batch.overflowed
    for n in range(FOLLOWER_PENDING_MAX + 5):
        follower.offer(Change(f"f{n}", "flow_submitted"))
    batch = await anext(batches)
    assert batch.overflowed and batch.changes == ()
    follower.offer(Change("c", "flow_failed"))
    assert await anext(batches) == type(batch)((Change("c", "flow_failed"),), False)
