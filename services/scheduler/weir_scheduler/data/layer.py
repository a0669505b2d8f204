"""DataLayer: every read and write of the scheduler's state, as typed methods.

Two implementations pass the same contract suite (tests/unit/test_data_contract.py):
`PostgresData` (postgres.py), the real one, whose every statement is named in queries.sql,
and `MemoryData` (memory.py), its in-memory twin for fast unit tests of the shell.

What callers rely on:
- `append` writes a whole batch or nothing; a second event for a (flow_id, seq) that is
  already in the log raises ConcurrencyError (optimistic concurrency: reload, decide again).
- A claimed timer is not claimed again until its hold lapses (`claim_timers`).
- `transaction()` gives a layer whose calls commit together or not at all; `lock` inside it
  serialises holders of the same (Lock, name) until it ends, on every replica.
- Outbox rows come back in the order they were appended.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from weir_proto import subjects
from weir_proto.api import FlowSummary, FlowView, ScheduleView, TaskSummary
from weir_proto.errors import WeirException

from weir_scheduler.data.locks import Lock
from weir_scheduler.data.rows import (
    AppendBatch,
    AttemptState,
    DueSchedule,
    FiredTimer,
    FlowKey,
    LoggedEvent,
    NewSchedule,
    OutboxRow,
    TaskKey,
)

DISPATCH_SUBJECTS = subjects.DISPATCH_PREFIX + "."
"""Outbox rows under this prefix are dispatches: the process that committed them publishes
them itself at once, so `outbox_batch(young_dispatches=...)` can leave recent ones out."""


class ConcurrencyError(WeirException):
    """Another writer appended to one of these flows first; reload and decide again."""


class Leadership(ABC):
    """The relay's hold on `Lock.RELAY`, on a connection of its own kept until `close`,
    which also wakes it when an append commits outbox rows."""

    @abstractmethod
    async def try_lead(self, wake: Callable[[], None]) -> bool:
        """Take the lock unless another holder has it; once held, call `wake` after every
        committed append."""

    @abstractmethod
    async def outbox_batch(self, most: int, *, young_dispatches: float = 0.0) -> list[OutboxRow]:
        """The oldest `most` outbox rows, in append order, leaving out dispatches committed
        less than `young_dispatches` seconds ago."""

    @abstractmethod
    async def outbox_delete(self, ids: Sequence[int]) -> None: ...

    @abstractmethod
    async def close(self) -> None:
        """Give up the lock (and the connection holding it)."""


class DataLayer(ABC):
    # Transactions and locks ----------------------------------------------------------------

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[DataLayer]:
        """A layer whose calls commit together when the block ends, or not at all."""

    @abstractmethod
    async def lock(self, lock: Lock, name: str) -> None:
        """Wait for, then hold until the transaction ends, the lock on `name` under `lock`.
        Only inside `transaction()`."""

    @abstractmethod
    def leadership(self) -> Leadership:
        """A fresh, not yet held, claim on the relay lock."""

    @abstractmethod
    async def migrate(self) -> list[str]:
        """Bring the schema up to date; the names of the migrations applied."""

    @abstractmethod
    async def ping(self) -> None:
        """Return once the database answers, or raise (the process's health check)."""

    # The log and its projections -----------------------------------------------------------

    @abstractmethod
    async def events_after(self, known: Mapping[str, int]) -> list[LoggedEvent]:
        """The events of each flow beyond the seq given for it, by flow then seq."""

    @abstractmethod
    async def flow_events(self, flow_id: str) -> list[str]:
        """Every event of a flow, encoded, in seq order."""

    @abstractmethod
    async def flow_digests(self, flow_ids: Sequence[str]) -> dict[str, tuple[str | None, str]]:
        """`{flow_id: (spec_digest, status)}` for those of `flow_ids` that exist."""

    @abstractmethod
    async def append(self, batch: AppendBatch) -> list[int]:
        """Write the batch atomically; the ids its outbox rows got, in order."""

    @abstractmethod
    async def outbox_batch(self, most: int, *, young_dispatches: float = 0.0) -> list[OutboxRow]:
        """The oldest `most` outbox rows, in append order, leaving out dispatches committed
        less than `young_dispatches` seconds ago."""

    @abstractmethod
    async def outbox_delete(self, ids: Sequence[int]) -> None:
        """Forget published outbox rows."""

    # Timers --------------------------------------------------------------------------------

    @abstractmethod
    async def claim_timers(self, most: int, hold: float) -> list[FiredTimer]:
        """Up to `most` due timers nobody holds, soonest first, held for `hold` seconds."""

    @abstractmethod
    async def drop_fired_timers(self, fired: Sequence[FiredTimer]) -> None:
        """Delete fired timers that are still due (one moved later meanwhile stays)."""

    @abstractmethod
    async def next_timer_in(self) -> float | None:
        """Seconds until the next unclaimed timer is due (None when there is none)."""

    @abstractmethod
    async def extend_leases(self, attempts: Sequence[tuple[str, str, int]], lease: float) -> None:
        """Push the lease timers of running attempts `(flow_id, task, attempt)` to `lease`
        seconds from now (not for cancelling flows)."""

    @abstractmethod
    async def attempt_silence(
        self, flow_id: str, task: str, attempt: int, lease: float
    ) -> float | None:
        """Seconds since the attempt's lease was last set, i.e. since its runner was last
        heard from; None when the attempt holds no lease."""

    @abstractmethod
    async def attempt_state(self, flow_id: str, task: str) -> AttemptState | None: ...

    # Queues, unique keys, admission --------------------------------------------------------

    @abstractmethod
    async def pending_flows(self) -> int:
        """Flows that have not ended (scheduled, pending, running, cancelling)."""

    @abstractmethod
    async def queue_in_flight(self, queue: str) -> int:
        """Attempts of the queue dispatched or running."""

    @abstractmethod
    async def queue_next(self, queue: str, most: int) -> list[tuple[str, str]]:
        """The next `(flow_id, task)` queued tasks to release: by priority, then each flow's
        turn counting what it has in flight, then older flow, then order in the flow.
        Tasks of paused flows wait (their flow's resume releases nothing itself)."""

    @abstractmethod
    async def unique_holder(
        self, key: str, statuses: Sequence[str], since: datetime | None
    ) -> tuple[str, str] | None:
        """`(flow_id, status)` of the newest flow with the unique key, in one of the
        statuses, created after `since`."""

    # Schedules -----------------------------------------------------------------------------

    @abstractmethod
    async def schedule_upsert(self, schedule: NewSchedule) -> ScheduleView: ...

    @abstractmethod
    async def schedule_list(self) -> list[ScheduleView]: ...

    @abstractmethod
    async def schedule_pause(self, name: str, paused: bool) -> ScheduleView | None: ...

    @abstractmethod
    async def schedule_delete(self, name: str) -> bool: ...

    @abstractmethod
    async def schedules_due(self, most: int) -> list[DueSchedule]:
        """Unpaused schedules whose next tick has come, soonest first; inside a transaction,
        held by it (other holders skip them)."""

    @abstractmethod
    async def schedule_advance(
        self, name: str, next_run_at: datetime, last_tick_at: datetime
    ) -> None: ...

    @abstractmethod
    async def schedule_next_in(self) -> float | None:
        """Seconds until the next unpaused schedule is due (None when there is none)."""

    # Read side -----------------------------------------------------------------------------

    @abstractmethod
    async def flow_view(self, flow_id: str) -> FlowView | None: ...

    @abstractmethod
    async def flow_page(
        self, status: str | None, after: FlowKey | None, most: int
    ) -> list[FlowSummary]:
        """Flows newest first (by created_at, then id), after `after`, each with its
        `task_counts`."""

    @abstractmethod
    async def flow_query(
        self, where: object, after: FlowKey | None, most: int
    ) -> list[FlowSummary]:
        """`flow_page` for the flows matching a filter (filters.FLOW_LEAVES); FilterError
        for a bad one."""

    @abstractmethod
    async def task_query(
        self, where: object, after: TaskKey | None, most: int
    ) -> list[TaskSummary]:
        """Tasks across flows matching a filter (filters.TASK_LEAVES): the newest flows'
        first (by created_at, then id), each flow's by position, after `after`; FilterError
        for a bad filter."""

    @abstractmethod
    async def prune_batch(
        self, statuses: Sequence[str], keep_last: int, older_than: datetime, most: int
    ) -> list[str]:
        """Delete, in one transaction, up to `most` flows in `statuses` that finished
        before `older_than`, beyond the newest `keep_last` of them, oldest first; their ids."""
