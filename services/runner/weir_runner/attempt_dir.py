"""The directory of one attempt on the runner's machine, and the record of how it ended.

Every executor keeps an attempt's files in `WEIR_RUNNER_DIR/<attempt_id>/`, shared by the
runners of one machine: the task's logs (which the worker ships live), its working directory
and the local supervisor's files while it runs, and `result.json` once the attempt is over. A
redelivered dispatch reads that record instead of running the task again; the janitor deletes
the directory once it has been unchanged for long enough.

The local supervisor (`weir_runner.supervisor`, standard library only) spells the names of the
files it writes itself: `exit.pid`, `task.pid`, `stdout.log`, `stderr.log` and `exit`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgspec
from weir_proto.messages import ErrorType, OutputDigest

from weir_runner.executors.base import AttemptResult


class AttemptRecord(msgspec.Struct):
    """`result.json`: an `AttemptResult` as recorded when the attempt ended."""

    exit_code: int | None
    error_type: ErrorType | None
    message: str
    snooze_seconds: float | None = None
    outputs: tuple[OutputDigest, ...] = ()

    @classmethod
    def of(cls, result: AttemptResult) -> AttemptRecord:
        return cls(
            result.exit_code,
            result.error_type,
            result.message,
            result.snooze_seconds,
            result.outputs,
        )

    def result(self) -> AttemptResult:
        return AttemptResult(
            self.exit_code, self.error_type, self.message, self.snooze_seconds, self.outputs
        )


_record_decoder = msgspec.json.Decoder(AttemptRecord)


class _File:
    """A file (or directory) of an attempt directory, by its name."""

    def __init__(self, name: str) -> None:
        self.file_name = name

    def __get__(self, attempt: AttemptDir, owner: type[AttemptDir] | None = None) -> Path:
        return attempt.path / self.file_name


@dataclass(frozen=True, slots=True)
class AttemptDir:
    """`<root>/<attempt_id>/` and the files in it."""

    path: Path

    @classmethod
    def of(cls, root: Path, attempt_id: str) -> AttemptDir:
        return cls(root / attempt_id)

    work = _File("work")
    """The local task's working directory."""
    stdout = _File("stdout.log")
    stderr = _File("stderr.log")
    result_file = _File("result.json")
    exit_file = _File("exit")
    """The local task's exit code, written by its supervisor the moment it ended."""
    supervisor_pid = _File("exit.pid")
    """The local supervisor's pid: the process group of the attempt."""
    task_pid = _File("task.pid")
    """The local task's own process (and group)."""
    supervisor_log = _File("supervisor.log")
    """What the local supervisor itself wrote to stderr."""
    snooze = _File("snooze")
    """Where a local task writes how long to snooze ($WEIR_SNOOZE_FILE)."""
    sandbox_paths = _File("paths")
    """The local task's files mounted at its absolute paths (in its sandbox)."""
    sandbox_root = _File("root")
    """The local task's sandbox root."""

    def __truediv__(self, name: str) -> Path:
        """A file of the attempt by its name."""
        return self.path / name

    def log(self, stream: str) -> Path:
        """The log of `stream` ("stdout" or "stderr")."""
        return self.path / f"{stream}.log"

    def recorded(self) -> AttemptResult | None:
        """How the attempt ended, if a runner recorded it."""
        try:
            data = self.result_file.read_bytes()
        except FileNotFoundError:
            return None
        return _record_decoder.decode(data).result()

    def record(self, result: AttemptResult) -> None:
        """Record how the attempt ended (atomically: a reader sees all of it or nothing)."""
        tmp = self.path / "result.json.tmp"
        tmp.write_bytes(msgspec.json.encode(AttemptRecord.of(result)))
        os.replace(tmp, self.result_file)
