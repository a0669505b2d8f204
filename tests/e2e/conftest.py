from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from weir.devstack import Stack
from weir.embedded import EmbeddedPostgres

from tests.conftest import fresh_database

FAST_FAILOVER = {
    # Attempts and commands held by a process killed with -9 come back within seconds.
    "WEIR_DISPATCH_ACK_WAIT": "2",
    "WEIR_SCHEDULER_ACK_WAIT": "2",
    "WEIR_SHUTDOWN_GRACE": "2",
    "WEIR_RUNNER_CONCURRENCY": "4",
}


def running_stack(tmp_path: Path, database_url: str, env: dict[str, str]) -> Iterator[Stack]:
    """The scheduler and the runner as real processes on real Postgres and NATS, with `env`
    (for a fixture to `yield from`)."""
    with Stack(tmp_path / "stack", env=dict(env), external_database_url=database_url) as running:
        yield running


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    yield from running_stack(tmp_path, database_url, FAST_FAILOVER)


@pytest.fixture(scope="module")
def shared_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: EmbeddedPostgres
) -> Iterator[Stack]:
    """One stack for the tests of a module that cannot see each other's flows: each asks
    only about the flows it made (by their ids), none about every flow or schedule there is
    (those take `stack`, a stack of their own)."""
    database_url = asyncio.run(fresh_database(postgres))
    yield from running_stack(tmp_path_factory.mktemp("shared"), database_url, FAST_FAILOVER)
