"""The task supervisor (`python -m weir_runner.supervisor`): once the task is reaped its
process group's id may belong to anyone, so only the attempt's own survivors are signalled,
and they still die."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from weir_runner.supervisor import Attempt


def _attempt(tmp_path: Path, *argv: str) -> dict[str, object]:
    return {
        "argv": list(argv),
        "env": {"PATH": os.environ["PATH"]},
        "cwd": str(tmp_path),
        "log_max": 65536,
        "grace": 1.0,
    }


def test_a_reaped_tasks_group_id_is_not_signalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = Attempt(_attempt(tmp_path, "true"))
    attempt.child = 4242
    groups: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: groups.append((pgid, sig)))
    monkeypatch.setattr(attempt, "remaining", list)
    attempt.signal_all(signal.SIGTERM)
    assert groups == [(4242, signal.SIGTERM)]
    attempt.reaped = True
    attempt.signal_all(signal.SIGKILL)
    assert groups == [(4242, signal.SIGTERM)], "a reaped task's group id was signalled"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def test_a_process_the_task_left_behind_dies_before_the_supervisor_ends(tmp_path: Path) -> None:
    script = "sleep 60 & echo $! > left.pid; exit 0"
    proc = subprocess.run(
        [sys.executable, "-m", "weir_runner.supervisor", str(tmp_path)],
        input=json.dumps(_attempt(tmp_path, "sh", "-c", script)).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "exit").read_text() == "0"
    left = int((tmp_path / "left.pid").read_text())
    assert not _alive(left), "the supervisor ended with the left-behind sleep running"
