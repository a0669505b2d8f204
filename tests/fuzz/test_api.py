"""Every `weir.api.*` request, hostile or random: a result, or a precise error (never
`internal`), and a refused request writes nothing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from weir.client import Client
from weir.config import Settings

from tests.fuzz.hostile import (
    API_VERBS,
    api_call,
    api_requests,
    assert_precise,
    still_serving,
    table_counts,
)

EXAMPLES = 40

API_CORPUS = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'"x"',
    b'{"flow_id": 1}',
    b'{"flow_id": "x\'; DROP TABLE flows; --"}',
    b'{"flow_id": "../../etc/passwd"}',
    b'{"flow_id": "' + b"f" * 100_000 + b'"}',
    b'{"limit": 0}',
    b'{"limit": 1000000000000000000000}',
    b'{"cursor": "not-a-cursor"}',
    b'{"status": "nope"}',
    b'{"where": {"or": []}}',
    b'{"where": {"not": {"not": {"not": {}}}}}',
    b'{"older_than": -1}',
    b'{"statuses": ["running"]}',
    b'{"name": "x", "cron": "61 * * * *", "flow": {"name": "x", "tasks": []}}',
    b'{"name": "x", "cron": "* * * * *", "timezone": "Mars/Olympus", "flow": {}}',
    b'{"unknown": true}',
]


@pytest.mark.parametrize("verb", API_VERBS)
async def test_hostile_api_requests_get_precise_errors_and_write_nothing(
    client: Client, settings: Settings, verb: str
) -> None:
    for payload in API_CORPUS:
        before = await table_counts(settings.database_url)
        reply = await api_call(client.nc, verb, payload)
        if reply.get("error") is None:
            continue  # accepted (e.g. `list` with no filter): allowed to answer
        assert_precise(reply, f"weir.api.{verb} {payload[:120]!r}")
        if verb != "submit":  # a refused submit is recorded as a rejected flow, by contract
            assert await table_counts(settings.database_url) == before, (verb, payload[:120])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_random_api_requests_are_answered_precisely(
    client: Client, settings: Settings, data: st.DataObject
) -> None:
    verb = data.draw(st.sampled_from(API_VERBS), label="verb")
    payload = data.draw(api_requests(verb), label="payload")
    before = await table_counts(settings.database_url)
    reply = await api_call(client.nc, verb, payload)
    if reply.get("error") is None:
        return
    assert_precise(reply, f"weir.api.{verb} {payload[:200]!r}")
    if verb != "submit":  # a refused submit is recorded as a rejected flow, by contract
        assert await table_counts(settings.database_url) == before, (verb, payload[:200])


async def test_api_still_serves_after_hostile_requests(client: Client) -> None:
    for verb in API_VERBS:
        await api_call(client.nc, verb, b"\x00\xff{")
    await still_serving(client, "after-api")
