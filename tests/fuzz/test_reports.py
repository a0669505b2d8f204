"""Hostile status reports (`weir.status.<flow>`, JetStream) and heartbeats
(`weir.heartbeat.<runner>`, core NATS): the scheduler drops what it cannot use, records
nothing for it, and keeps running flows."""

from __future__ import annotations

import json
from functools import partial

from hypothesis import HealthCheck, given, settings
from weir.client import Client
from weir.config import Settings
from weir_proto import subjects
from weir_scheduler.service import STATUS_CONSUMER

from tests.fuzz.hostile import (
    WAIT,
    heartbeats,
    status_reports,
    still_serving,
    table_counts,
)
from tests.waiting import until

EXAMPLES = 30
_examples = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

REPORT_CORPUS = [
    b"",
    b"{",
    b"null",
    b'{"type": "finished"}',
    b'{"type": "nope", "flow_id": "f", "task": "a", "attempt": 1, "runner": "r", "at": "x"}',
    json.dumps(
        {
            "type": "finished",
            "flow_id": "no-such-flow",
            "task": "a",
            "attempt": 1,
            "runner": "r",
            "at": "2026-01-01T00:00:00Z",
            "exit_code": 0,
        }
    ).encode(),
    json.dumps(
        {
            "type": "started",
            "flow_id": "x'; DROP TABLE events; --",
            "task": "../../etc",
            "attempt": -1,
            "runner": "r" * 10_000,
            "at": "2026-01-01T00:00:00Z",
        }
    ).encode(),
    b"x" * 1_000_000,
]


async def test_hostile_reports_and_heartbeats_change_nothing_and_flows_still_run(
    client: Client, settings: Settings
) -> None:
    before = await table_counts(settings.database_url)
    for n, payload in enumerate(REPORT_CORPUS):
        await client.js.publish(f"weir.status.f{n}", payload, timeout=WAIT)
        await client.nc.publish("weir.heartbeat.evil", payload)
    await client.nc.flush()
    await still_serving(client, "after-reports")
    after = await table_counts(settings.database_url)
    grew = {t for t in ("flows", "schedules") if after[t] != before[t] + (t == "flows")}
    assert not grew, (before, after)


async def _handled(client: Client, seq: int) -> bool:
    """Whether the scheduler has acknowledged (or dropped) every report up to stream seq `seq`."""
    info = await client.js.consumer_info(subjects.STREAM_STATUS, STATUS_CONSUMER)
    return info.ack_floor is not None and info.ack_floor.stream_seq >= seq


@_examples
@given(payload=status_reports, heartbeat=heartbeats)
async def test_random_reports_and_heartbeats_are_dropped_without_harm(
    client: Client, settings: Settings, payload: bytes, heartbeat: bytes
) -> None:
    before = await table_counts(settings.database_url)
    await client.nc.publish("weir.heartbeat.fuzz", heartbeat)
    ack = await client.js.publish("weir.status.fuzz", payload, timeout=WAIT)
    await until(partial(_handled, client, ack.seq), f"the scheduler handled {payload[:200]!r}")
    assert await table_counts(settings.database_url) == before, (payload[:200], heartbeat[:200])


async def test_status_consumer_still_works_after_random_reports(client: Client) -> None:
    # Hypothesis runs all its examples on one stack and cannot end with a check of its own,
    # so the check that the status consumer survives undecodable reports is here.
    for payload in (b"\xff", b'{"type": "started"}', b"[]", b'{"flow_id": 5}'):
        await client.js.publish("weir.status.fuzz", payload, timeout=WAIT)
    await still_serving(client, "after-random-reports")
