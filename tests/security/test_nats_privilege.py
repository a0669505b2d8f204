"""Least privilege in NATS: only the scheduler creates or changes weir's streams.

Each attack runs as the runner's NATS user of deploy/nats/permissions.conf (what a task that
stole the runner's password could do) against a real nats-server, scheduler and runner; every
attempt is refused and the stack keeps working.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from weir.client import Client
from weir.config import Settings
from weir.jetstream import ensure_streams, stream_configs
from weir_proto import subjects
from weir_proto.events import event_type
from weir_runner.worker import Runner
from weir_scheduler.service import STATUS_CONSUMER, SUBMIT_CONSUMER, Scheduler

from tests.conftest import Services, _start
from tests.fuzz.test_security import PASSWORDS, connected_as, permissions_url, permitted
from tests.waiting import until

__all__ = ["permissions_url"]  # the fixture: a nats-server running permissions.conf

WAIT = 60.0


def as_user(url: str, user: str) -> str:
    return url.replace("nats://", f"nats://{user}:{PASSWORDS[user]}@")


@pytest.fixture
def role_settings(permissions_url: str, database_url: str, tmp_path: Path) -> Settings:
    """Settings of a scheduler connecting as `weir-scheduler` (runners: see `runner_settings`)."""
    return Settings(
        nats_url=as_user(permissions_url, "weir-scheduler"),
        database_url=database_url,
        runner_dir=str(tmp_path / "attempts"),
        dispatch_ack_wait=5.0,
        shutdown_grace=2.0,
    )


def runner_settings(settings: Settings, url: str) -> Settings:
    return dataclasses.replace(settings, nats_url=as_user(url, "weir-runner"))


@pytest.fixture
async def stack(role_settings: Settings, permissions_url: str) -> AsyncIterator[Services]:
    scheduler = Scheduler(role_settings)
    scheduler_task = await _start("scheduler", scheduler)
    runner = Runner(runner_settings(role_settings, permissions_url))
    runner_task = await _start("runner", runner)
    services = Services(role_settings, scheduler, runner, scheduler_task, runner_task)
    yield services
    await services.stop()


async def run_flow(url: str, name: str) -> str:
    """Submit a one-task flow as the submitter role and wait for it: its final event type."""
    async with await Client.connect(as_user(url, "weir-submitter")) as client:
        flow_id = await client.submit({"name": name, "tasks": [{"name": "a", "cmd": ["true"]}]})
        final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    return event_type(final)


def config_of(name: str, **changes: Any) -> StreamConfig:
    (config,) = [c for c in stream_configs() if c.name == name]
    return dataclasses.replace(config, **changes)


def attacks(js: JetStreamContext) -> dict[str, Callable[[], Awaitable[object]]]:
    """What a runner's credentials were enough for before: each must now be refused."""
    events, commands = subjects.STREAM_EVENTS, subjects.STREAM_COMMANDS
    return {
        "shrink WEIR_EVENTS to one message": lambda: js.update_stream(
            config_of(events, max_msgs=1)
        ),
        "re-route WEIR_COMMANDS": lambda: js.update_stream(
            config_of(commands, subjects=["weir.nowhere.>"])
        ),
        "delete WEIR_EVENTS": lambda: js.delete_stream(events),
        "delete WEIR_COMMANDS": lambda: js.delete_stream(commands),
        "purge WEIR_EVENTS": lambda: js.purge_stream(events),
        "purge WEIR_COMMANDS": lambda: js.purge_stream(commands),
        "create a stream": lambda: js.add_stream(
            StreamConfig(name="STOLEN", subjects=["stolen.>"])
        ),
        "delete the scheduler's submit consumer": lambda: js.delete_consumer(
            commands, SUBMIT_CONSUMER
        ),
        "delete the scheduler's status consumer": lambda: js.delete_consumer(
            subjects.STREAM_STATUS, STATUS_CONSUMER
        ),
    }


async def test_runner_user_cannot_change_delete_or_purge_streams_nor_others_consumers(
    stack: Services, permissions_url: str
) -> None:
    url = permissions_url
    assert await run_flow(url, "before") == "flow_succeeded"
    async with connected_as(url, "weir-scheduler") as scheduler:
        before = await scheduler.jetstream().stream_info(subjects.STREAM_EVENTS)

    async with connected_as(url, "weir-runner") as runner:
        assert await permitted(attacks(runner.jetstream(timeout=1.0))) == []

    async with connected_as(url, "weir-scheduler") as scheduler:
        js = scheduler.jetstream()
        events = await js.stream_info(subjects.STREAM_EVENTS)
        commands = await js.stream_info(subjects.STREAM_COMMANDS)
        assert events.config.max_msgs == before.config.max_msgs
        assert events.state.messages == before.state.messages
        assert commands.config.subjects == ["weir.cmd.>"]
        await js.consumer_info(subjects.STREAM_COMMANDS, SUBMIT_CONSUMER)
        await js.consumer_info(subjects.STREAM_STATUS, STATUS_CONSUMER)
    assert await run_flow(url, "after") == "flow_succeeded"


async def test_runner_started_before_the_scheduler_waits_for_its_streams(
    role_settings: Settings, permissions_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="weir.nats")
    runner = Runner(runner_settings(role_settings, permissions_url))
    runner_task = asyncio.create_task(runner.run())
    scheduler = Scheduler(role_settings)
    scheduler_task: asyncio.Task[None] | None = None
    try:

        def waiting() -> bool:
            assert not runner_task.done(), "the runner stopped instead of waiting"
            return "waiting for the scheduler to create the streams" in caplog.text

        await until(waiting, "the runner says it waits for the scheduler's streams")
        assert not runner.ready.is_set()
        scheduler_task = await _start("scheduler", scheduler)
        await asyncio.wait_for(runner.ready.wait(), WAIT)
        assert await run_flow(permissions_url, "late") == "flow_succeeded"
    finally:
        runner.stop.set()
        scheduler.stop.set()
        pending = [t for t in (runner_task, scheduler_task) if t is not None]
        await asyncio.wait_for(asyncio.gather(*pending), 30)


async def test_the_submitter_role_gets_the_schedulers_verdict_and_reads_its_flow(
    stack: Services, permissions_url: str, tmp_path: Path
) -> None:
    """`weir submit` asks the scheduler for its verdict (`weir.api.submit`) and `weir show`
    reads the flow (`weir.api.get`): both are the submitter's to use."""
    spec = tmp_path / "verdict.yaml"
    spec.write_text("name: verdict\ntasks:\n  - {name: a, cmd: ['true']}\n")
    env = {
        **os.environ,
        "WEIR_NATS_USER": "weir-submitter",
        "WEIR_NATS_PASSWORD": PASSWORDS["weir-submitter"],
    }

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "weir.cli", *args, "--nats-url", permissions_url],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await cli("submit", str(spec), "--wait")
    assert code == 0, err
    flow_id = out.split()[0]
    code, out, err = await cli("show", flow_id, "--json")
    assert code == 0, err
    assert '"status":"succeeded"' in out.replace(" ", "")


async def test_cli_submit_without_the_commands_stream_is_one_clear_line(
    permissions_url: str, tmp_path: Path
) -> None:
    url = permissions_url
    async with connected_as(url, "weir-operator") as operator:
        # What a runner could do before; only the scheduler or an operator can now.
        js = operator.jetstream()
        await ensure_streams(js)
        await js.update_stream(config_of(subjects.STREAM_COMMANDS, subjects=["weir.nowhere.>"]))
    spec = tmp_path / "one.yaml"
    spec.write_text("name: one\ntasks:\n  - {name: a, cmd: ['true']}\n")
    env = {
        **os.environ,
        "WEIR_NATS_USER": "weir-submitter",
        "WEIR_NATS_PASSWORD": PASSWORDS["weir-submitter"],
        "COLUMNS": "200",  # one line, as wide as it is
    }
    cli = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "weir.cli", "submit", str(spec), "--queue", "--nats-url", url],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await asyncio.wait_for(cli.communicate(), WAIT)
    assert cli.returncode == 1
    assert "Traceback" not in err.decode()
    assert err.decode().strip().splitlines() == [
        f"error: (unavailable) no stream takes {subjects.SUBMIT}: {subjects.STREAM_COMMANDS} is "
        "missing or was changed; start the scheduler, which creates it"
    ]


@pytest.mark.parametrize(
    "user",
    ["weir-task", "weir-submitter", "weir-runner", "weir-web", "weir-scheduler", "weir-operator"],
)
async def test_no_role_reads_another_roles_inbox(
    stack: Services, permissions_url: str, user: str
) -> None:
    """A task pod's user (or any other role) that subscribes to `_INBOX.>` would read every
    dispatch pulled by a runner (its attempt token, other flows' env values) and every API
    answer. Each user may read only `_INBOX.<user>.>`, the prefix weir's processes use."""
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))

    nc = await nats.connect(
        as_user(permissions_url, user), error_cb=on_error, allow_reconnect=False
    )
    try:
        seen: list[str] = []

        async def sniff(msg: Msg) -> None:
            seen.append(msg.subject)

        await nc.subscribe("_INBOX.>", cb=sniff)
        await nc.flush()
        await until(lambda: any("_inbox.>" in e.lower() for e in refused), f"{user} refused")
        assert await run_flow(permissions_url, f"sniffed-by-{user}") == "flow_succeeded"
        assert seen == [], f"{user} read others' inboxes: {seen[:3]}"
    finally:
        await nc.close()
    async with connected_as(permissions_url, user) as own:  # weir's own prefix still works
        assert own._inbox_prefix.decode() == f"_INBOX.{user}"
        await own.jetstream().account_info()
