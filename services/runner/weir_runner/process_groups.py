"""Process groups of local attempts: reading the pid a supervisor wrote, asking whether a
group still has a live process, and signalling a group that may be gone already.

An attempt's supervisor runs in its own session, so its pid is the process group of
everything it started (the task has a group of its own, under the same supervisor); these
outlive the runner that started them, and the next runner finds them through their pid files.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def read_pid(path: Path) -> int | None:
    """The process group a supervisor wrote to `path`, None if there is none."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def group_alive(group: int) -> bool:
    """Whether any process of the group is alive (one of another user's counts)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(group: int, signum: signal.Signals) -> None:
    """Send `signum` to the group; one that is gone (or not ours to signal) is left be."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
