"""Floods of submits against a real scheduler and runner (Postgres, NATS JetStream): each is
refused with a clear error at a documented limit, and every submit that was accepted
becomes a flow. Limits are set tiny here; their defaults are in README's configuration."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from weir.client import Client, SubmitVerdict, WeirError
from weir.config import Settings
from weir_proto import subjects
from weir_proto.errors import ErrorCode
from weir_proto.events import event_type

from tests.conftest import Services
from tests.flows import WAIT, task

FLOOD = 20


@pytest.fixture
async def limited(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    tiny = dataclasses.replace(settings, **request.param)
    services = await Services.start(tiny)
    try:
        async with await Client.connect(tiny.nats_url) as client:
            yield client
    finally:
        await services.stop()


def flow(name: str, *cmd: str) -> dict[str, Any]:
    return {"name": name, "tasks": [task("only", *(cmd or ("true",)))]}


async def recorded(client: Client, flow_id: str) -> None:
    """Wait for the flow's first event: the scheduler recorded the submit."""
    async for event in client.events(flow_id, follow=True):
        assert event_type(event) == "flow_submitted", event
        return


async def ended(client: Client, flow_id: str) -> None:
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert event_type(final) == "flow_succeeded", final


@pytest.mark.parametrize("limited", [{"commands_max_msgs": 5}], indirect=True)
async def test_a_flood_past_the_commands_stream_limit_is_refused_and_nothing_accepted_is_lost(
    limited: Client,
) -> None:
    client = limited
    accepted: list[str] = []
    refused: list[WeirError] = []
    for i in range(FLOOD):
        try:
            accepted.append(await client.submit(flow(f"flood-{i}")))
        except WeirError as exc:
            refused.append(exc)

    assert len(accepted) == 5, accepted
    assert len(refused) == FLOOD - 5
    assert {e.code for e in refused} == {ErrorCode.OVERLOADED}
    assert subjects.STREAM_COMMANDS in refused[0].message
    assert "WEIR_COMMANDS_MAX_MSGS" in refused[0].message
    for flow_id in accepted:
        await ended(client, flow_id)


@pytest.mark.parametrize("limited", [{"submit_rate": 1.0, "submit_burst": 3}], indirect=True)
async def test_a_client_flooding_the_submit_api_is_rate_limited_and_keeps_what_was_accepted(
    limited: Client, settings: Settings
) -> None:
    client = limited
    answers = await asyncio.gather(
        *(client.submit(flow(f"burst-{i}"), verdict=True) for i in range(FLOOD)),
        return_exceptions=True,
    )
    accepted = [a for a in answers if isinstance(a, SubmitVerdict)]
    refused = [a for a in answers if isinstance(a, WeirError)]
    assert len(accepted) + len(refused) == FLOOD, answers
    # The burst, and perhaps one more token refilled while the flood was answered.
    assert 3 <= len(accepted) <= 4, accepted
    assert {e.code for e in refused} == {ErrorCode.RATE_LIMITED}
    assert all(e.retry_after is not None and 0 < e.retry_after <= 1.0 for e in refused)
    assert "too many submits from this connection" in refused[0].message
    for verdict in accepted:
        assert verdict.flow_id is not None
        await ended(client, verdict.flow_id)

    # Another connection has a bucket of its own.
    async with await Client.connect(settings.nats_url) as other:
        assert (await other.submit(flow("other"), verdict=True)).flow_id


@pytest.mark.parametrize("limited", [{"max_pending_flows": 2}], indirect=True)
async def test_submits_past_the_pending_flows_cap_are_refused_until_flows_end(
    limited: Client,
) -> None:
    client = limited
    long = [(await client.submit(flow(f"long-{i}", "sleep", "60"), verdict=True)) for i in (1, 2)]
    for verdict in long:
        assert verdict.flow_id is not None
        await asyncio.wait_for(recorded(client, verdict.flow_id), WAIT)

    with pytest.raises(WeirError) as refused:
        await client.submit(flow("third"), verdict=True)
    assert refused.value.code == ErrorCode.OVERLOADED
    assert "WEIR_MAX_PENDING_FLOWS=2" in refused.value.message
    assert refused.value.retry_after

    first = long[0].flow_id
    assert first is not None
    await client.cancel(first, "make room")
    final = await asyncio.wait_for(client.wait(first), WAIT)
    assert event_type(final) == "flow_cancelled"
    third = await client.submit(flow("third"), verdict=True)
    assert third.flow_id is not None
    await ended(client, third.flow_id)
