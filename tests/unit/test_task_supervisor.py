"""The task supervisor (`python -m weir_runner.supervisor`): once the task is reaped its
process group's id may belong to anyone, so only the attempt's own survivors are signalled,
and they still die."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from weir_runner import supervisor
from weir_runner.supervisor import Attempt


def _attempt(tmp_path: Path, *argv: str) -> dict[str, object]:
    return {
        "argv": list(argv),
        "env": {"PATH": os.environ["PATH"]},
        "cwd": str(tmp_path),
        "log_max": 65536,
        "grace": 1.0,
    }


def test_a_reaped_tasks_group_is_signalled_only_while_a_member_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = Attempt(_attempt(tmp_path, "true"))
    attempt.child = 4242
    groups: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: groups.append((pgid, sig)))
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)
    member = {os.getpid(): (1, 1), 4300: (os.getpid(), 4242)}  # a survivor in the group
    monkeypatch.setattr(supervisor, "_live_processes", lambda: member)
    attempt.signal_all(signal.SIGTERM)  # the task alive: its group
    attempt.reaped = True
    attempt.signal_all(signal.SIGKILL)  # reaped, but a member holds the group's id
    assert groups == [(4242, signal.SIGTERM), (4242, signal.SIGKILL)]
    monkeypatch.setattr(supervisor, "_live_processes", lambda: {os.getpid(): (1, 1)})
    attempt.signal_all(signal.SIGKILL)
    assert groups == [(4242, signal.SIGTERM), (4242, signal.SIGKILL)], (
        "a reaped task's group id was signalled with no member left: it may be a stranger's"
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def _supervise(tmp_path: Path, script: str) -> None:
    """`python -m weir_runner.supervisor` over `sh -c script`, as the local executor runs it;
    the task's exit must be 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "weir_runner.supervisor", str(tmp_path)],
        input=json.dumps(_attempt(tmp_path, "sh", "-c", script)).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_a_process_the_task_left_behind_dies_before_the_supervisor_ends(tmp_path: Path) -> None:
    script = "sleep 60 & echo $! > left.pid; exit 0"
    _supervise(tmp_path, script)
    assert (tmp_path / "exit").read_text() == "0"
    left = int((tmp_path / "left.pid").read_text())
    assert not _alive(left), "the supervisor ended with the left-behind sleep running"


HOPPER = """
import os, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:  # a new pid every few milliseconds, never the same one
    if os.fork():
        os._exit(0)
"""


def test_processes_that_fork_as_fast_as_they_exit_die_with_the_attempt(tmp_path: Path) -> None:
    """The attack on killing leftovers one pid at a time: each hopper forks and exits in a
    loop, so a pid read from /proc is gone when its kill comes. The task itself exits at once."""
    marker = f"weir-hopper-{os.getpid()}-{tmp_path.name}"
    script = f"for i in 1 2 3 4; do python3 -c '{HOPPER}' {marker} & done; sleep 1; exit 0"
    _supervise(tmp_path, script)
    survivors = [pid for pid in _with_marker(marker) if _alive(pid)]
    for pid in survivors:  # do not leave them running whatever the outcome
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not survivors, f"{len(survivors)} hopping processes outlived the attempt"


def _with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(entry))
    return found
