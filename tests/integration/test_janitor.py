"""Finished attempts' directories go after WEIR_RUNNER_KEEP; running ones never do."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time
from pathlib import Path

import pytest
from weir.client import Client
from weir.config import ConfigError, Settings
from weir_runner import janitor

from tests.conftest import Services
from tests.flows import WAIT, task
from tests.waiting import until

WEEK = 7 * 24 * 3600.0


def attempt(root: Path, name: str, age: float, result: bool = True) -> Path:
    home = root / name
    (home / "work").mkdir(parents=True)
    (home / "stdout.log").write_text("out\n")
    if result:
        (home / "result.json").write_text("{}")
    then = time.time() - age
    for path in (home / "work", home / "stdout.log", home / "result.json", home):
        if path.exists():
            os.utime(path, (then, then))
    return home


def test_only_attempts_unchanged_past_their_keep_and_not_running_are_deleted(
    tmp_path: Path,
) -> None:
    old = attempt(tmp_path, "f-old-1", 2 * WEEK)
    recent = attempt(tmp_path, "f-recent-1", 60)
    abandoned = attempt(tmp_path, "f-abandoned-1", 2 * WEEK, result=False)
    followed = attempt(tmp_path, "f-followed-1", 2 * WEEK)
    alive = attempt(tmp_path, "f-alive-1", 2 * WEEK, result=False)
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        (alive / "exit.pid").write_text(str(sleeper.pid))
        then = time.time() - 2 * WEEK
        os.utime(alive / "exit.pid", (then, then))
        os.utime(alive, (then, then))

        deleted = janitor.sweep(tmp_path, WEEK, lambda: {"f-followed-1"})
    finally:
        sleeper.kill()
        sleeper.wait()

    assert deleted == 2
    assert not old.exists() and not abandoned.exists()
    assert recent.exists() and followed.exists() and alive.exists()


async def test_a_runner_deletes_finished_attempts_after_its_keep(settings: Settings) -> None:
    briefly = dataclasses.replace(settings, runner_keep=1.0)
    services = await Services.start(briefly)
    try:
        async with await Client.connect(briefly.nats_url) as client:
            flow_id = await client.submit({"name": "brief", "tasks": [task("a", "true")]})
            await asyncio.wait_for(client.wait(flow_id), WAIT)
            home = Path(briefly.runner_dir) / f"{flow_id}-a-1"
            await until(lambda: not home.exists(), f"{home} removed")
            # The flow's logs and outcome stay available: they are in NATS and the log.
            assert (await client.get(flow_id)).status == "succeeded"
    finally:
        await services.stop()


def test_keep_is_a_duration() -> None:
    assert Settings.from_env({"WEIR_RUNNER_KEEP": "2d"}).runner_keep == 2 * 24 * 3600
    assert Settings.from_env({}).runner_keep == WEEK
    with pytest.raises(ConfigError, match=r"^WEIR_RUNNER_KEEP: "):
        Settings.from_env({"WEIR_RUNNER_KEEP": "soon"})
