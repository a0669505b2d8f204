"""Real parts for every test: a private Postgres cluster per session, a fresh database and a
fresh nats-server (JetStream) per test, and the services running in-process or as processes."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from weir.client import Client
from weir.config import Settings
from weir.embedded import EmbeddedNats, EmbeddedPostgres
from weir_runner.executors.base import Executor
from weir_runner.worker import Runner
from weir_scheduler.data.databases import create_database
from weir_scheduler.service import Scheduler

READY_TIMEOUT = 30.0
TASK_USER = "root"
"""The tests' tasks write to the tests' temporary directories (root's, mode 0700), so a root
runner runs them as root; tests/security runs runners with the default task user."""
os.environ.setdefault("WEIR_RUNNER_TASK_USER", TASK_USER)  # runners started as processes


LONG_FIRST = ("tests/unit/test_decider_machine.py", "tests/unit/test_decider.py")
"""Modules of long, CPU-bound property tests: run first, so the workers overlap them with
the tests that mostly wait on services instead of finishing the run alone."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_FIRST))  # stable


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    cluster = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"))
    cluster.start()
    yield cluster
    cluster.stop()


async def fresh_database(postgres: EmbeddedPostgres, prefix: str = "t") -> str:
    """The URL of a new, empty database in the test session's cluster."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await create_database(postgres.url, name)
    return postgres.url_for(name)


@pytest.fixture
async def database_url(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    yield await fresh_database(postgres)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


def stack_settings(nats_url: str, database_url: str, root: Path) -> Settings:
    """The settings of a test's services: attempts under `root`, short waits for a runner
    that vanished and for a stopping one."""
    return Settings(
        nats_url=nats_url,
        database_url=database_url,
        runner_dir=str(root / "runner" / "attempts"),
        runner_concurrency=8,
        runner_task_user=TASK_USER,
        dispatch_ack_wait=5.0,
        shutdown_grace=2.0,
    )


@pytest.fixture
def settings(database_url: str, nats_server: EmbeddedNats, tmp_path: Path) -> Settings:
    return stack_settings(nats_server.url, database_url, tmp_path)


async def _start(name: str, service: Scheduler | Runner) -> asyncio.Task[None]:
    task = asyncio.create_task(service.run(), name=name)
    ready = asyncio.create_task(service.ready.wait())
    done, _ = await asyncio.wait(
        {task, ready}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        ready.cancel()
        task.result()
        raise RuntimeError(f"{name} stopped before it was ready")
    if ready not in done:
        raise RuntimeError(f"{name} not ready within {READY_TIMEOUT}s")
    return task


@dataclass
class Services:
    settings: Settings
    scheduler: Scheduler
    runner: Runner
    scheduler_task: asyncio.Task[None]
    runner_task: asyncio.Task[None]

    @classmethod
    async def start(cls, settings: Settings, executor: Executor | None = None) -> Services:
        """A scheduler and a runner (with `executor`, else the one settings name), ready."""
        scheduler = Scheduler(settings)
        scheduler_task = await _start("scheduler", scheduler)
        runner = Runner(settings, executor=executor)
        runner_task = await _start("runner", runner)
        return cls(settings, scheduler, runner, scheduler_task, runner_task)

    async def stop(self) -> None:
        self.runner.stop.set()
        self.scheduler.stop.set()
        await asyncio.wait_for(asyncio.gather(self.runner_task, self.scheduler_task), 30)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    running = await Services.start(settings)
    yield running
    await running.stop()


@pytest.fixture
async def second_scheduler(services: Services) -> AsyncIterator[Scheduler]:
    """A second scheduler replica beside the one of `services`, on the same database and NATS."""
    second = Scheduler(services.settings)
    running = await _start("scheduler-2", second)
    yield second
    second.stop.set()
    await asyncio.wait_for(running, 30)


@pytest.fixture
async def client(services: Services) -> AsyncIterator[Client]:
    async with await Client.connect(services.settings.nats_url) as connected:
        yield connected
