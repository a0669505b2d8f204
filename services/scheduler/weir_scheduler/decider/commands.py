"""The commands `decide` answers, and the deployment's settings decisions depend on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from weir_proto.errors import SpecError
from weir_proto.messages import AttemptFinished, AttemptStarted, OutputDigest
from weir_proto.spec import FlowSpec

from weir_scheduler.planner import Plan

__all__ = [
    "DEFAULT_POLICY",
    "Cancel",
    "Command",
    "Deduplicate",
    "Expand",
    "FireTimer",
    "Gather",
    "Pause",
    "Policy",
    "ReadCondition",
    "RecordFinished",
    "RecordStarted",
    "Reject",
    "Release",
    "Resume",
    "Retry",
    "Submit",
    "TakeOver",
    "TimerKind",
    "Update",
]


@dataclass(frozen=True, slots=True)
class Submit:
    spec: FlowSpec
    plan: Plan
    rerun_of: str | None = None
    reused: tuple[str, ...] = ()
    reused_outputs: tuple[OutputDigest, ...] = ()
    """The digests `rerun_of` recorded for the outputs of the `reused` tasks."""


@dataclass(frozen=True, slots=True)
class Reject:
    errors: tuple[SpecError, ...]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Deduplicate:
    existing: str
    key: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RecordStarted:
    report: AttemptStarted


@dataclass(frozen=True, slots=True)
class RecordFinished:
    report: AttemptFinished


@dataclass(frozen=True, slots=True)
class TakeOver:
    """`runner`, which proved it holds the attempt's dispatch (its token), claims a running
    attempt whose runner has been silent for `silent_for` seconds. The shell builds it only
    after both checks (provenance.py); deciding it only records the change of runner."""

    task: str
    attempt: int
    runner: str
    silent_for: float


TimerKind = Literal["start", "retry", "deadline", "lease", "fanout"]
"""`fanout`: a mapped task waits for the shell to read its list (attempt 0) or to gather
its instances' outputs (attempt 1), see `decider/fanout.py`; or a task waits for the shell
to read the outputs its `when` condition names (attempt 2), see `decider/gates.py`."""


@dataclass(frozen=True, slots=True)
class FireTimer:
    """A due time kept in the timers projection has passed."""

    kind: TimerKind
    task: str = ""
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class Release:
    """A limited queue has room: dispatch this queued task."""

    task: str


@dataclass(frozen=True, slots=True)
class Expand:
    """The list mapped task `task` maps over, as the shell read it: one instance per item;
    or why it could not be used (`error`: not JSON, not a list, over a limit)."""

    task: str
    items: tuple[Any, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Gather:
    """Every instance of mapped `task` succeeded and the shell stored each of its outputs as
    the list of theirs (`outputs`: their digests), or could not (`error`)."""

    task: str
    outputs: tuple[OutputDigest, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ReadCondition:
    """The upstream outputs `task`'s `when` condition names, as the shell read them
    (`values`: output name -> value), or why one could not be read (`error`)."""

    task: str
    values: tuple[tuple[str, Any], ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str = "cancelled by request"


@dataclass(frozen=True, slots=True)
class Pause:
    """Hand out nothing new until `Resume` (`weir pause`)."""

    reason: str = "paused by request"


@dataclass(frozen=True, slots=True)
class Resume:
    """Hand out work again (`weir resume`)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Run `task` again inside its flow (`weir retry`); with `downstream`, every task after
    it too."""

    task: str
    downstream: bool = False


@dataclass(frozen=True, slots=True)
class Update:
    """Replace the spec of a flow that has not started (`weir update`). The shell built
    `spec` from the old one and the request, and planned it (`plan`): it is valid."""

    spec: FlowSpec
    plan: Plan
    changed: tuple[str, ...]
    start_at: datetime | None = None


Command = (
    Submit
    | Reject
    | Deduplicate
    | RecordStarted
    | RecordFinished
    | TakeOver
    | FireTimer
    | Cancel
    | Release
    | Expand
    | Gather
    | Pause
    | Resume
    | Retry
    | Update
    | ReadCondition
)


@dataclass(frozen=True, slots=True)
class Policy:
    """Settings of the deployment that decisions depend on."""

    limited_queues: frozenset[str] = frozenset()
    """Queues with a global concurrency limit: their tasks are queued, then released by the
    QueueDispatcher in priority order as capacity frees up."""
    dispatch_window: int | None = None
    """Dispatches per flow and (unlimited) queue that no runner has started yet. Runners
    take dispatches in order, so another flow's task waits behind at most this many of
    each flow's; the flow's other ready tasks wait here and go out as its attempts start.
    None: no window."""


DEFAULT_POLICY = Policy()
