"""Hostile input that once got past the scheduler (found by fuzzing and the chaos soak),
kept as regression tests: each must be refused precisely, visibly and without stalling
anything else.

How they were fixed (services/scheduler/weir_scheduler/): planner.decode refuses invalid
UTF-8 and any NUL (Postgres text and jsonb cannot hold one) with the JSON path; api._decode
turns deep nesting into bad_request; the consumers fall back to one message at a time when a
batch fails and reject (submits) or drop (reports) a message that keeps failing on its own;
prune bounds older_than; the scheduler logs its NATS URL without credentials. The random
fuzzers beside this file draw such input too, with no filter.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from weir.client import Client
from weir.config import Settings
from weir_proto.events import event_type

from tests.flows import task
from tests.fuzz.hostile import api_call, assert_precise
from tests.inspection import inspecting
from tests.waiting import until

POISON_WAIT = 5.0

NON_UTF8 = b'{"name": "\xff\xfe", "tasks": [{"name": "a", "cmd": ["true"]}]}'
NUL_NAME = json.dumps({"name": "a\u0000b", "tasks": [{"name": "a", "cmd": ["true"]}]}).encode()
NUL_TASK = json.dumps({"name": "x", "tasks": [{"name": "a\u0000b", "cmd": ["true"]}]}).encode()
DEEP_WHERE = b'{"where": ' + b"[" * 5000 + b"]" * 5000 + b"}"


async def test_submit_with_invalid_utf8_is_refused_as_invalid_flow(client: Client) -> None:
    assert_precise(await api_call(client.nc, "submit", NON_UTF8), "non-UTF-8 submit")


async def test_submit_with_nul_in_the_name_is_refused_as_invalid_flow(client: Client) -> None:
    assert_precise(await api_call(client.nc, "submit", NUL_NAME), "NUL in name")


async def test_submit_with_nul_in_a_task_name_is_refused_as_invalid_flow(client: Client) -> None:
    assert_precise(await api_call(client.nc, "submit", NUL_TASK), "NUL in task name")


async def test_query_with_a_deeply_nested_filter_is_a_bad_request(client: Client) -> None:
    assert_precise(await api_call(client.nc, "query", DEEP_WHERE), "deep where")


async def test_acknowledged_non_utf8_submit_becomes_a_rejection(
    client: Client, settings: Settings
) -> None:
    await client.js.publish("weir.cmd.submit", NON_UTF8)

    async def rejected() -> int:
        async with inspecting(settings.database_url) as db:
            return await db.flow_count_with_status("rejected")

    async def recorded() -> bool:
        return await rejected() > 0

    await until(recorded, "a rejected flow", POISON_WAIT)
    assert await rejected() == 1


@pytest.mark.parametrize("name", ["a\u0000b"], ids=["nul-name"])
async def test_acknowledged_submit_with_nul_becomes_a_rejection(client: Client, name: str) -> None:
    spec = {"id": "nul-in-name", "name": name, "tasks": [task("a")]}
    await client.js.publish("weir.cmd.submit", json.dumps(spec).encode())
    final = await asyncio.wait_for(client.wait("nul-in-name"), POISON_WAIT)
    assert event_type(final) == "flow_rejected"


async def test_a_poison_status_report_does_not_stall_other_flows(client: Client) -> None:
    poison = {
        "type": "finished",
        "flow_id": "x\u0000y",
        "task": "a",
        "attempt": 1,
        "runner": "r",
        "at": "2026-01-01T00:00:00Z",
        "exit_code": 0,
    }
    await client.js.publish("weir.status.poison", json.dumps(poison).encode())
    flow_id = await client.submit({"id": "next-to-poison", "name": "chain", "tasks": CHAIN})
    final = await asyncio.wait_for(client.wait(flow_id), POISON_WAIT)
    assert event_type(final) == "flow_succeeded"


CHAIN = [task(f"t{n}", depends=[f"t{n - 1}"] if n else []) for n in range(4)]


async def test_prune_with_an_absurd_age_is_a_bad_request(client: Client) -> None:
    reply = await api_call(client.nc, "prune", b'{"older_than": 63931231092.0}')
    assert_precise(reply, "prune older_than=6.4e10")
