"""A flow's state as folded from its events (`evolve.py` folds them), and what the core
reads off it.

Flow state is immutable; tasks live in a persistent map so a 10,000-task flow evolves in
O(log n) per event. Besides the tasks, the state keeps indexes derived from them (counters,
the ready line per queue, the tasks due to be skipped); `transitions.py` keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import immutables
import msgspec
from weir_proto import triggers as rules
from weir_proto.api import AttemptFailure, AttemptRecord
from weir_proto.errors import SpecError
from weir_proto.events import TaskDispatched
from weir_proto.messages import OutputDigest
from weir_proto.spec import EnvVar, TaskSpec
from weir_proto.status import FlowStatus, TaskStatus

from weir_scheduler.decider.copying import replace
from weir_scheduler.planner import Plan


class FoldedTask(AttemptRecord, frozen=True):
    """A task as folded from its events, with its current attempt's record; only the reports
    of that attempt's `runner` count."""

    name: str
    queue: str
    priority: int
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    """The current (or last) attempt number; snoozes and retries each start a new one."""
    failures: tuple[AttemptFailure, ...] = ()
    token_digest: str = ""
    """Digest of the current attempt's token: only reports carrying the token count."""
    outputs: tuple[OutputDigest, ...] = ()
    """Once succeeded: the size and SHA-256 of each output as it was uploaded."""
    spent: int = 0
    """Failures recorded before the task's latest `weir retry`: they do not count against
    its max_attempts."""


@dataclass(frozen=True, slots=True)
class FanOut:
    """A mapped task whose dependencies have ended and that runs: before its expansion
    (`expanded` false) the shell reads the list it maps over; then `left` of its `count`
    instances have not ended; at 0 it ends as they did (gathering their outputs first)."""

    expanded: bool = False
    count: int = 0
    left: int = 0
    reading: bool = False
    """Not a fan-out (yet): the task waits for the shell to read the upstream outputs its
    `when` condition names (`decider/gates.py`)."""


class FoldedFlow(msgspec.Struct, frozen=True):
    """A flow as folded from its events. `seq` 0 means the flow does not exist yet.

    A msgspec Struct, as `FoldedTask`: `evolve` copies it with a field or two changed for
    every event, which `msgspec.structs.replace` does in C."""

    id: str
    seq: int = 0
    name: str = ""
    status: FlowStatus = FlowStatus.PENDING
    created_at: datetime | None = None
    updated_at: datetime | None = None
    start_at: datetime | None = None
    plan: Plan | None = None
    tasks: immutables.Map[str, FoldedTask] = immutables.Map()
    ready: immutables.Map[str, bool] = immutables.Map()
    """Tasks whose dependencies all succeeded and that wait for a slot (max_parallel) or
    for room in the dispatch window."""
    line: immutables.Map[str, tuple[tuple[int, int], ...]] = immutables.Map()
    """The ready tasks again, per queue, as sorted (priority, position in the spec): the
    next to hand out are a prefix, so a start that frees one window place costs a lookup,
    not a sort of every ready task."""
    blocked: immutables.Map[str, int] = immutables.Map()
    """Per pending task, how many of its dependencies have not ended yet (so a fan-in of
    10,000 costs one decrement per parent, not a scan of every parent)."""
    settled: immutables.Map[str, str] = immutables.Map()
    """Pending tasks whose dependencies have all ended and that do not run: why (their
    trigger rule does not hold, or their `when` is false). `decide` skips them."""
    errors: tuple[SpecError, ...] = ()
    active: int = 0
    """Tasks handed to a runner and not finished."""
    retrying: int = 0
    """Tasks waiting for their next attempt or for queue capacity; they keep their
    max_parallel slot."""
    unfinished: int = 0
    """Tasks not in a terminal state."""
    unstarted: immutables.Map[str, int] = immutables.Map()
    """Per queue, attempts handed to a runner that no runner has started yet: what the
    flow holds of the queue's dispatch stream (bounded by `Policy.dispatch_window`)."""
    held: immutables.Map[str, immutables.Map[str, bool]] = immutables.Map()
    """Per queue, the tasks `queued` there: for a limited queue, waiting for the
    QueueDispatcher; for another, waiting for room in the flow's dispatch window."""
    failing: bool = False
    cancelling: bool = False
    cancel_reason: str | None = None
    fail_fast: bool = False
    """The cancel under way is fail_fast's (a task failed), not a user's: it ends every task
    but the flow's on_exit task, which still runs last."""
    spares_on_exit: bool = False
    """The cancel under way leaves the on_exit task to run last: fail_fast's, or a user's
    first (a user's cancel after that ends it too)."""
    rerun_of: str | None = None
    reused: frozenset[str] = frozenset()
    fanout: immutables.Map[str, FanOut] = immutables.Map()
    """Mapped tasks being expanded or run as instances (`decider/fanout.py`), and tasks
    waiting for the outputs their condition reads (`decider/gates.py`)."""
    read_outputs: immutables.Map[str, Any] = immutables.Map()
    """Output name -> value, as `task_condition_read` recorded it for a condition."""
    expanded: frozenset[str] = frozenset()
    """Mapped tasks expanded into instances (also into none): a retry plans them again to
    wait for their instances, or, after a task before them it plans again, from scratch (its
    instances dropped, the list read again); an update not at all (`decider/stepping.py`)."""
    retired: immutables.Map[str, int] = immutables.Map()
    """Instances a retry dropped (it planned their mapped task from scratch) -> the last
    attempt number each had: an instance of the same name expanded later counts its
    attempts on from there, so no attempt number repeats for a task name (a runner names
    an attempt's pod or process by it, and a report on an old attempt stays stale)."""
    updates: int = 0
    """`flow_updated` events so far: a start timer set before the latest update is stale."""

    @property
    def exists(self) -> bool:
        return self.seq > 0

    @property
    def paused(self) -> bool:
        """`weir pause`d: nothing new is handed out."""
        return self.status is FlowStatus.PAUSED

    @property
    def halted(self) -> bool:
        """A cancel that ends every task is under way: nothing new starts (`stops` says
        what a cancel that spares the on_exit task lets start)."""
        return self.cancelling and not self.spares_on_exit

    @property
    def user_cancelled(self) -> bool:
        """A user's cancel is under way (not only fail_fast's)."""
        return self.cancelling and not self.fail_fast

    def stops(self, name: str) -> bool:
        """Whether the cancel under way keeps task `name` from starting or running again:
        fail_fast's and a user's first keep every task but the on_exit task, a user's
        second every task."""
        if not self.cancelling:
            return False
        return not self.spares_on_exit or self.plan is None or name != self.plan.on_exit

    def output_digest(self, output: str) -> OutputDigest | None:
        """What the log recorded for `output` when its task uploaded it (None: nothing, as
        for outputs stored before digests were recorded)."""
        producer = self.plan.producers.get(output) if self.plan is not None else None
        task = self.tasks.get(producer) if producer is not None else None
        if task is None:
            return None
        return next((d for d in task.outputs if d.name == output), None)


def with_token_digest(flow: FoldedFlow, dispatched: TaskDispatched) -> FoldedFlow:
    """`flow` as evolving `dispatched` would have left it, given that it was decided without
    its token digest. Tokens are random, so the store mints them after deciding (`decide`
    stays pure) and puts their digests into the events it appends and into the state."""
    task = flow.tasks.get(dispatched.task) if flow.exists else None
    if task is None or task.attempt != dispatched.attempt:
        return flow  # the attempt has moved on within the same decision
    sealed = replace(task, token_digest=dispatched.token_digest)
    return replace(flow, tasks=flow.tasks.set(task.name, sealed))


def flow_outcome(flow: FoldedFlow) -> str:
    """`failed` when a task of the flow (other than its on_exit task) failed, else
    `cancelled` when a user cancelled it, else `succeeded`: what the on_exit task gets as
    WEIR_FLOW_STATUS, and how the flow ends (`decider/core.py`)."""
    assert flow.plan is not None
    on_exit = flow.plan.on_exit
    outcome = rules.flow_outcome(t.status for t in flow.tasks.values() if t.name != on_exit)
    return "cancelled" if outcome == "succeeded" and flow.user_cancelled else outcome


def dispatch_spec(flow: FoldedFlow, name: str) -> TaskSpec:
    """What a runner gets to run for `name`: the planned task, and for the on_exit task
    the flow's outcome so far in WEIR_FLOW_STATUS."""
    assert flow.plan is not None
    spec = flow.plan.tasks[name]
    if name != flow.plan.on_exit:
        return spec
    status = EnvVar(name=FLOW_STATUS_ENV, value=flow_outcome(flow))
    env = [var for var in spec.env if var.name != FLOW_STATUS_ENV]
    return msgspec.structs.replace(spec, env=[*env, status])


FLOW_STATUS_ENV = rules.FLOW_STATUS_ENV
