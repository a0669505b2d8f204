"""Attempt directories past their keep are deleted, so a runner that runs for months does
not fill its disk with logs, results and artifact copies.

Every executor keeps an attempt's files in `WEIR_RUNNER_DIR/<attempt_id>/` (an `AttemptDir`);
`result.json` is written when the attempt is over. A directory is expired `WEIR_RUNNER_KEEP`
seconds (a week by default) after its last change: its result, or, for an attempt that never
got one (a runner killed mid-run whose dispatch never came back), its newest file, provided
no process it started is still alive.
Directories of attempts this runner is following are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from weir_runner.attempt_dir import AttemptDir
from weir_runner.process_groups import group_alive, read_pid

log = logging.getLogger("weir.runner.janitor")

SWEEP_INTERVAL_MAX = 600.0


def _last_change(attempt: AttemptDir) -> float:
    """When the attempt last wrote anything: its result if any, else its newest entry."""
    try:
        return attempt.result_file.stat().st_mtime
    except FileNotFoundError:
        pass
    newest = attempt.path.stat().st_mtime
    for entry in os.scandir(attempt.path):
        newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def _still_running(attempt: AttemptDir) -> bool:
    group = read_pid(attempt.supervisor_pid)
    return group is not None and group_alive(group)


def expired(root: Path, keep: float, now: float) -> Iterator[Path]:
    """The attempt directories under `root` unchanged for more than `keep` seconds, whose
    processes have all ended."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        attempt = AttemptDir(Path(entry.path))
        try:
            if now - _last_change(attempt) > keep and not _still_running(attempt):
                yield attempt.path
        except FileNotFoundError:  # removed meanwhile (by another runner of this machine)
            continue


def sweep(root: Path, keep: float, following: Callable[[], set[str]]) -> int:
    """Delete the expired attempt directories but those in `following()`; how many."""
    deleted = 0
    for attempt in expired(root, keep, time.time()):
        if attempt.name in following():
            continue
        shutil.rmtree(attempt, ignore_errors=True)
        deleted += 1
    return deleted


async def sweep_round(root: Path, keep: float, following: Callable[[], set[str]]) -> None:
    """One round of the supervised `attempt-janitor` loop: wait a quarter of `keep` (at most
    ten minutes), then `sweep`. An error is the supervisor's to log and retry."""
    await asyncio.sleep(min(keep / 4, SWEEP_INTERVAL_MAX))
    deleted = await asyncio.to_thread(sweep, root, keep, following)
    if deleted:
        log.info("deleted expired attempt directories", extra={"count": deleted})
