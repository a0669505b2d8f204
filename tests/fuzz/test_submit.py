"""Hostile submits, on the durable subject and on the API: every one becomes a rejection
that says what is wrong (a `flow_rejected` event, or an `invalid_flow` error), and the
scheduler goes on serving."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from weir.client import Client
from weir.config import Settings
from weir_proto.errors import ErrorCode

from tests.fuzz.hostile import (
    ACCEPTED,
    WAIT,
    api_call,
    assert_precise,
    payloads,
    still_serving,
    submit_corpus,
)
from tests.inspection import inspecting
from tests.waiting import eventually

EXAMPLES = 25


async def _flows(database_url: str) -> list[Any]:
    async with inspecting(database_url) as db:
        return await db.flow_verdicts()


async def test_hostile_corpus_on_the_durable_subject_becomes_precise_rejections(
    client: Client, settings: Settings
) -> None:
    corpus = submit_corpus(settings.max_submit_bytes)
    for _, payload in corpus:
        await client.js.publish("weir.cmd.submit", payload, timeout=WAIT)
    rows = await eventually(
        lambda: _flows(settings.database_url),
        lambda rows: len(rows) >= len(corpus),
        f"each of the {len(corpus)} acknowledged hostile submits became a flow or a rejection",
    )
    assert len(rows) == len(corpus)
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert len(rejected) == len(corpus) - len(ACCEPTED), [(r["id"], r["status"]) for r in rows]
    for row in rejected:
        errors = msgspec.json.decode(row["errors"].encode())
        assert errors and all(e["path"] and len(e["message"]) > 10 for e in errors), errors
    async with inspecting(settings.database_url) as db:  # stored verbatim, nothing dropped
        assert await db.flow_count_named("x'; DROP TABLE events; --")
    await still_serving(client, "after-corpus")


async def test_hostile_corpus_on_the_api_gets_invalid_flow_errors(
    client: Client, settings: Settings
) -> None:
    for label, payload in submit_corpus(settings.max_submit_bytes):
        reply = await api_call(client.nc, "submit", payload)
        if label in ACCEPTED:
            assert reply.get("error") is None, (label, reply)
            continue
        assert_precise(reply, f"weir.api.submit {label}")
        refusals = {ErrorCode.INVALID_FLOW, ErrorCode.BAD_REQUEST}
        assert reply["error"]["code"] in refusals, (label, reply)
    rows = await _flows(settings.database_url)
    assert sum(r["status"] == "rejected" for r in rows) == len(rows) - len(ACCEPTED), rows
    await still_serving(client, "after-api-corpus")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=payloads)
async def test_random_api_submits_are_accepted_or_precisely_refused(
    client: Client, payload: bytes
) -> None:
    reply = await api_call(client.nc, "submit", payload)
    if "result" in reply and reply.get("error") is None:
        return
    assert_precise(reply, f"weir.api.submit {payload[:200]!r}")
