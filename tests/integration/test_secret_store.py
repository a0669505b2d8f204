"""The secret store's list of names against a real nats-server: a name stored (or removed)
and acknowledged is in (or out of) the very next list, whatever is still in flight."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext
from weir.embedded import EmbeddedNats
from weir.secrets import SecretSet, SecretsStored, SecretStore

ROUNDS = 150


@pytest.fixture
async def js(nats_server: EmbeddedNats) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


def _key() -> bytes:
    return os.urandom(32)


async def test_a_stored_name_is_listed_at_once_and_a_removed_one_is_not(
    js: JetStreamContext,
) -> None:
    # A fresh store each round: each list starts a watch of its own, as weir-web's
    # `GET /secrets` does after `PUT /secrets/NAME` (nats-py's keys() listed [] here).
    key = _key()
    assert await SecretStore(js, key).names() == []
    for n in range(ROUNDS):
        await SecretStore(js, key).set(f"s{n}", b"v")
        assert await SecretStore(js, key).names() == sorted(f"s{i}" for i in range(n + 1))
    for n in range(ROUNDS):
        assert await SecretStore(js, key).delete(f"s{n}")
        assert await SecretStore(js, key).names() == sorted(f"s{i}" for i in range(n + 1, ROUNDS))


async def test_a_watch_reports_what_was_stored_then_each_change(js: JetStreamContext) -> None:
    key = _key()
    await SecretStore(js, key).set("a", b"1")
    await SecretStore(js, key).set("b", b"2")
    await SecretStore(js, key).delete("a")
    changes = SecretStore(js, key).watch()
    assert await anext(changes) == SecretsStored(frozenset({"b"}))
    await SecretStore(js, key).set("c", b"3")
    assert await anext(changes) == SecretSet("c")
    await changes.aclose()
