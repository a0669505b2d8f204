"""The local executor after a runner died: a finished attempt is never run again, a running
one is adopted, not started twice; a lost attempt's leftover process is stopped."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from weir.config import Settings
from weir_proto.messages import Dispatch
from weir_proto.spec import TaskSpec
from weir_runner.attempt_dir import AttemptDir
from weir_runner.executors.local import (
    SUPERVISOR_ENV,
    LocalExecutor,
    supervisor_argv,
)

from tests.waiting import process_gone, until

FLOW_ID = f"f{os.getpid()}"
"""An attempt's cgroup is named by its attempt id alone, machine-wide (weir-attempts/<id>
under the runner's cgroup): with a fixed flow id, this file run twice at once on one machine
would stop each other's tasks."""


def dispatch(cmd: list[str], attempt: int = 1) -> Dispatch:
    return Dispatch(
        flow_id=FLOW_ID,
        attempt=attempt,
        attempt_id=f"{FLOW_ID}-t-{attempt}",
        task=msgspec.convert({"name": "t", "cmd": cmd, "queue": "default"}, TaskSpec),
        dispatched_at=datetime.now(UTC),
        token="attempt-token",
    )


def left_running(root: Path, job: Dispatch) -> subprocess.Popen[bytes]:
    """What a runner killed with -9 leaves: the attempt's supervised process, still going."""
    home = root / job.attempt_id
    (home / "work").mkdir(parents=True)
    supervisor = subprocess.Popen(
        supervisor_argv(home),
        cwd=home,
        env=SUPERVISOR_ENV,
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    assert supervisor.stdin is not None
    instructions = {
        "argv": job.task.cmd,
        "env": {"PATH": "/usr/bin:/bin"},
        "cwd": str(home / "work"),
    }
    supervisor.stdin.write(json.dumps({**instructions, "log_max": 1 << 20}).encode())
    supervisor.stdin.close()
    return supervisor


async def nothing() -> None:
    return None


async def task_started(root: Path, job: Dispatch) -> int:
    """Until the attempt's supervisor has started the task (it records the task's pid); the
    pid."""
    pid_file = AttemptDir.of(root, job.attempt_id).task_pid
    await until(pid_file.exists, f"the task of {job.attempt_id} started")
    return int(pid_file.read_text())


async def test_running_attempt_is_adopted_not_started_again(tmp_path: Path) -> None:
    trail = tmp_path / "trail"
    job = dispatch(["sh", "-c", f"echo start >> {trail}; sleep 0.5; echo end >> {trail}; exit 3"])
    orphan = left_running(tmp_path, job)
    await task_started(tmp_path, job)
    result = await LocalExecutor(tmp_path).run(job, nothing)
    orphan.wait()
    assert result.exit_code == 3 and result.error_type == "exit_code"
    assert trail.read_text().split() == ["start", "end"]


async def test_attempt_that_finished_while_no_runner_watched_reports_its_exit_code(
    tmp_path: Path,
) -> None:
    trail = tmp_path / "trail"
    job = dispatch(["sh", "-c", f"echo ran >> {trail}"])
    left_running(tmp_path, job).wait()
    result = await LocalExecutor(tmp_path).run(job, nothing)
    assert result.exit_code == 0 and result.error_type is None
    assert trail.read_text().split() == ["ran"]


async def test_a_lost_attempts_leftover_process_is_stopped_before_the_retry(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    old = dispatch(["sh", "-c", f"sleep 5; touch {marker}"], attempt=1)
    orphan = left_running(tmp_path, old)
    leftover = await task_started(tmp_path, old)
    retry = dispatch(["true"], attempt=2)
    result = await LocalExecutor(tmp_path).run(retry, nothing)
    assert result.exit_code == 0
    assert orphan.wait(timeout=5) != 0
    assert process_gone(leftover)  # the old task itself, not only its supervisor


async def test_missing_program_is_a_clear_executor_error(tmp_path: Path) -> None:
    result = await LocalExecutor(tmp_path).run(dispatch(["no-such-program-x"]), nothing)
    assert result.error_type == "executor"
    assert result.message == "task \"t\": cannot start 'no-such-program-x': not found on PATH"


async def test_a_task_without_timeout_stops_at_the_default_timeout(tmp_path: Path) -> None:
    settings = Settings(runner_dir=str(tmp_path), runner_task_user="root", task_timeout=1.0)
    shell, child = tmp_path / "shell.pid", tmp_path / "child.pid"
    job = dispatch(["sh", "-c", f"echo $$ > {shell}; sleep 30 & echo $! > {child}; wait"])
    result = await LocalExecutor(tmp_path, settings=settings).run(job, nothing)
    assert result.error_type == "timeout", result
    assert "the longest this runner lets a task run (WEIR_TASK_TIMEOUT)" in result.message
    pids = {int(shell.read_text()), int(child.read_text())}
    assert all(process_gone(pid) for pid in pids), pids  # stopped before the result


async def test_a_specs_longer_timeout_cannot_outlast_the_operators_ceiling(
    tmp_path: Path,
) -> None:
    """A submitter's `timeout: 604800` would hold a runner's slot for a week: the operator's
    WEIR_TASK_TIMEOUT is the longest any task runs."""
    settings = Settings(runner_dir=str(tmp_path), runner_task_user="root", task_timeout=1.0)
    job = dispatch(["sleep", "30"])
    job = msgspec.structs.replace(job, task=msgspec.structs.replace(job.task, timeout=604800.0))
    result = await LocalExecutor(tmp_path, settings=settings).run(job, nothing)
    assert result.error_type == "timeout", result
    assert "its own timeout of 604800s is longer than that" in result.message


async def test_a_task_over_its_memory_limit_fails(tmp_path: Path) -> None:
    settings = Settings(
        runner_dir=str(tmp_path), runner_task_user="root", task_memory_max=256 * 1024**2
    )
    grab = "import sys; b = bytearray(512 * 1024 * 1024); sys.exit(0)"
    result = await LocalExecutor(tmp_path, settings=settings).run(
        dispatch(["/usr/bin/python3", "-c", grab]), nothing
    )
    assert result.error_type == "exit_code" and result.exit_code == 1
    assert "MemoryError" in result.message
