"""The attempt's process on this machine: the supervisor that starts it, stopping it, reading
how it ended (its recorded exit code, a snooze, the tail of its stderr)."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import sys
from pathlib import Path

from weir_proto.messages import Dispatch

from weir_runner import sandbox, supervisor
from weir_runner.attempt_dir import AttemptDir
from weir_runner.process_groups import group_alive, read_pid, signal_group

STDERR_TAIL_BYTES = 2048
KILL_GRACE_SECONDS = 5.0
SNOOZE_READ_BYTES = 64
SNOOZE_MAX_SECONDS = 86_400.0

SUPERVISOR_ENV = {"PATH": sandbox.TOOLS_PATH, "LC_ALL": "C.UTF-8"}
"""The supervisor's whole environment: the task's PATH, LD_PRELOAD and the like apply to the
task only."""


def supervisor_argv(home: Path) -> list[str]:
    """The command that supervises the attempt in `home`: it runs the task (argv as given,
    no splitting) and records its exit code in `exit` the moment it and everything it started
    have ended. It outlives a runner killed with -9: the next runner on this machine adopts the
    attempt (waits for it, or takes its recorded exit code) instead of starting it again, so a
    task that finished is never run twice, whenever the runner died."""
    return [sys.executable, "-I", "-S", supervisor.__file__, str(home)]


async def stop_attempt(home: AttemptDir, group: int) -> None:
    """Ask the attempt's supervisor to stop it (SIGTERM to everything the task started,
    SIGKILL after a grace period); kill the task's group and the supervisor if it does not
    answer in time."""
    signal_group(group, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + KILL_GRACE_SECONDS + 5.0
    while group_alive(group) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    for pid in (read_pid(home.task_pid), group):
        if pid is not None:
            signal_group(pid, signal.SIGKILL)


def stop_older_attempts(root: Path, dispatch: Dispatch) -> None:
    """Fence: an earlier attempt of this task that an earlier runner left running (it was
    declared lost meanwhile) must not run beside this one."""
    prefix = dispatch.attempt_id.removesuffix(str(dispatch.attempt))
    for path in root.glob(f"{glob.escape(prefix)}*"):
        if path.name == dispatch.attempt_id or not path.name[len(prefix) :].isdigit():
            continue
        sibling = AttemptDir(path)
        group = read_pid(sibling.supervisor_pid)
        if group is not None and group_alive(group) and not sibling.exit_file.exists():
            for pid in (group, read_pid(sibling.task_pid)):
                if pid is not None:  # the task at once, its supervisor (and leftovers)
                    signal_group(pid, signal.SIGKILL if pid != group else signal.SIGTERM)


def recorded_exit(home: AttemptDir) -> int | None:
    """The exit code the supervisor recorded, if it did."""
    try:
        return int(home.exit_file.read_text().strip())
    except (OSError, ValueError):
        return None


def check_program(program: str, env: dict[str, str], work: Path, task: str) -> str | None:
    """A clear error before anything starts when the program cannot be found or run."""
    if "/" in program:
        path = (work / program) if not program.startswith("/") else Path(program)
        if not path.is_file():
            return f'task "{task}": cannot start {program!r}: no such file'
        if not os.access(path, os.X_OK):
            return f'task "{task}": cannot start {program!r}: permission denied'
        return None
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        return f'task "{task}": cannot start {program!r}: not found on PATH'
    return None


def snooze_seconds(path: Path) -> float | None:
    """The delay a snoozing task wrote to $WEIR_SNOOZE_FILE, if any (bounded to a day)."""
    try:
        with open(path, "rb") as handle:  # written by the task: read no more than a number
            value = float(handle.read(SNOOZE_READ_BYTES).decode().strip())
    except (OSError, ValueError):
        return None
    return min(max(value, 0.0), SNOOZE_MAX_SECONDS) if value == value else None


_SIGNALS = {s.value: s.name for s in signal.Signals}


def failure_message(task: str, code: int, stderr: Path) -> str:
    """How the task ended with `code`, and the tail of its stderr."""
    if code < 0:
        head = f'task "{task}" was killed by signal {-code}'
    elif code > 128 and code - 128 in _SIGNALS:
        head = f'task "{task}" exited with code {code} ({_SIGNALS[code - 128]})'
    else:
        head = f'task "{task}" exited with code {code}'
    if not stderr.exists():
        return head
    size = stderr.stat().st_size
    with open(stderr, "rb") as handle:
        handle.seek(max(0, size - STDERR_TAIL_BYTES))
        tail = handle.read().decode(errors="replace").strip()
    if not tail:
        return head
    marker = "…" if size > STDERR_TAIL_BYTES else ""
    return f"{head}; stderr ends: {marker}{tail}"
