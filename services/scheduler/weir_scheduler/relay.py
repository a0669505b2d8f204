"""OutboxRelay: publishes every committed outbox row to JetStream, then deletes it.

One relay at a time holds a Postgres advisory lock, so events of a flow reach NATS in `seq`
order; other replicas wait to take over. Dispatches are published once, by the process that
committed them (the fast path); the leading relay publishes only those still in the outbox
`FAST_PATH_GRACE` seconds after their commit (that process died or could not reach NATS).
Rows are read from the outbox table, not after a high-water mark, so an event whose
transaction committed late is still published.
`Nats-Msg-Id` is the event id: JetStream drops a re-publish after a crash between publish
and delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
import nats.errors
from nats.js import JetStreamContext
from weir import telemetry
from weir.jetstream import Outgoing, Publisher, Sent
from weir.supervisor import Duty
from weir_proto import subjects

from weir_scheduler.data import DataLayer, Leadership, OutboxRow
from weir_scheduler.data.layer import DISPATCH_SUBJECTS
from weir_scheduler.data.postgres import UNAVAILABLE

log = logging.getLogger("weir.scheduler.relay")

RELAY_BATCH_DEFAULT = 512
RELAY_IDLE_POLL_DEFAULT = 1.0
"""Seconds between outbox checks when no NOTIFY arrives (a safety net, not the fast path)."""
RELAY_COALESCE = 0.015
"""Seconds the relay lets commits gather after a NOTIFY woke it. The next step of a flow
does not wait on its events: the dispatch a commit made (sent by the fast path) goes to a
runner, whose report comes back and is appended, within a few milliseconds on an idle
installation, and a relay round (its query, publishes and delete) taking the CPUs in that
time delays the step. After 15 ms it runs between steps, once for several of them, and a
busy installation's events go out in fewer, larger rounds. What waits on events waits that
much longer: a flow's end seen by `weir submit --wait` and the web UI, and a cancel reaching
the runners (which kill its attempts) and the purge of its dispatches not yet taken."""
RELAY_ACK_TIMEOUT_DEFAULT = 10.0
RELAY_RETRY_DEFAULT = 0.5
RELAY_FOLLOW_POLL = 1.0
"""Seconds between a waiting replica's tries to take the relay lock."""
NATS_UNAVAILABLE = (nats.errors.Error, TimeoutError, OSError)
"""Publish errors the relay retries itself (rows stay in the outbox); others are bugs, for
the supervisor to log, report and restart the loop on."""
FAST_PATH_GRACE = 3.0
"""Seconds the leading relay leaves a committed dispatch to the fast path of the process that
committed it; a dispatch still in the outbox after that is the relay's to publish (one
published by both is dropped by JetStream as a duplicate)."""
FAST_PATH_BACKLOG = 256
"""Sent batches whose acks the fast path may lag behind before appends wait for it."""


class OutboxRelay:
    """The `relay` service; its `fast_path` publishes what this process committed."""

    name = "relay"

    def __init__(
        self,
        data: DataLayer,
        js: JetStreamContext,
        publisher: Publisher,
        *,
        batch: int = RELAY_BATCH_DEFAULT,
        idle_poll: float = RELAY_IDLE_POLL_DEFAULT,
    ) -> None:
        if batch < 1:
            raise ValueError("relay batch must be at least 1")
        self.data = data
        """For the fast path's deletes (the leading relay keeps its own connection)."""
        self.js = js
        """For purging a cancelled flow's dispatches."""
        self.publisher = publisher
        self.batch = batch
        self.idle_poll = idle_poll
        self._fast: asyncio.Queue[tuple[list[OutboxRow], Sent]] = asyncio.Queue(FAST_PATH_BACKLOG)
        self.published = 0
        self._wake = asyncio.Event()
        self._leadership: Leadership | None = None
        self._leads = False

    async def run_once(self) -> None:
        """One round of the supervised `relay` loop: lead (take the lock, on a connection of
        its own kept from round to round) or wait for the leader to go; publish a batch; wait
        for a NOTIFY or `idle_poll`. A round that fails drops the connection (and with it the
        lock) before the supervisor restarts the loop."""
        try:
            leader = await self._leading()
            if leader is None:
                await asyncio.sleep(RELAY_FOLLOW_POLL)
                return
            self._wake.clear()
            if await self._drain_once(leader) < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll)
                    await asyncio.sleep(RELAY_COALESCE)
        except BaseException:
            await self.close()
            raise

    async def _leading(self) -> Leadership | None:
        """The hold on the relay lock, or None while another replica holds it."""
        if self._leadership is None:
            self._leadership = self.data.leadership()
        if not await self._leadership.try_lead(self._wake.set):
            return None
        if not self._leads:
            self._leads = True
            log.info("relay is leading")
        return self._leadership

    async def close(self) -> None:
        """Drop the relay's connection (and the lock it holds)."""
        leadership, self._leadership, self._leads = self._leadership, None, False
        if leadership is not None:
            await leadership.close()

    async def _purge_dispatches(self, flow_id: str, spares: bool) -> None:
        """A cancelled flow's attempts that no runner has taken never start (runners that
        took one already kill it when they see the cancel event). A cancel that spares the
        on_exit task (fail_fast's, a user's first) spares its attempt: it may be handed out
        in the same decision, and runs."""
        purged = [subjects.flow_dispatches(flow_id)]
        if not spares:
            purged.append(subjects.on_exit_dispatches(flow_id))
        try:
            for subject in purged:
                await self.js.purge_stream(subjects.STREAM_DISPATCH, subject=subject)
        except NATS_UNAVAILABLE as exc:
            log.warning("dispatches not purged", extra={"flow_id": flow_id, "error": str(exc)})

    async def _drain_once(self, leader: Leadership) -> int:
        batch = await leader.outbox_batch(self.batch, young_dispatches=FAST_PATH_GRACE)
        if not batch:
            return 0
        if not await self._publish(batch):
            await asyncio.sleep(RELAY_RETRY_DEFAULT)
            return 0
        await leader.outbox_delete([row.id for row in batch])
        self.published += len(batch)
        return len(batch)

    async def publish_committed(self, rows: list[OutboxRow]) -> None:
        """Fast path: publish the dispatches this process just committed at once, before
        its caller goes on, so a runner gets its next task without waiting for the relay's
        wake-up; the `relay-fast-path` loop then waits for their acks and deletes them from
        the outbox. Events stay with the leading relay alone: it publishes in outbox order,
        which keeps every flow's events in `seq` order on the stream even with several
        scheduler replicas. Whatever is not published and deleted here stays in the outbox
        for the leading relay; a row published twice is dropped by JetStream as a duplicate
        (same Nats-Msg-Id). Waits only when the acks of FAST_PATH_BACKLOG batches are still
        to be waited for."""
        dispatches = [row for row in rows if row.subject.startswith(DISPATCH_SUBJECTS)]
        if not dispatches:
            return
        try:
            sent = await self.publisher.send(_outgoing(dispatches))
        except NATS_UNAVAILABLE as exc:
            log.debug("committed dispatches left to the relay", extra={"error": str(exc)})
            return
        await self._fast.put((dispatches, sent))

    @property
    def fast_path(self) -> Duty:
        """The `relay-fast-path` service: `fast_path_once`, round after round."""
        return Duty("relay-fast-path", self.fast_path_once)

    async def fast_path_once(self) -> None:
        """One round of the supervised `relay-fast-path` loop: wait for the acks of what
        `publish_committed` sent, then delete what JetStream holds from the outbox. Rows it
        could not publish or delete stay in the outbox for the leading relay."""
        sent = [await self._fast.get()]
        while not self._fast.empty() and sum(len(rows) for rows, _ in sent) < self.batch:
            sent.append(self._fast.get_nowait())
        deadline = asyncio.get_running_loop().time() + RELAY_ACK_TIMEOUT_DEFAULT
        stored = [row for rows, acks in sent if await _all_stored(acks, deadline) for row in rows]
        if not stored:
            return
        try:
            await self.data.outbox_delete([row.id for row in stored])
        except UNAVAILABLE as exc:
            log.debug("published rows left in the outbox", extra={"error": str(exc)})

    async def _publish(self, rows: list[OutboxRow]) -> bool:
        try:
            for outcome in await self.publisher.publish(_outgoing(rows), RELAY_ACK_TIMEOUT_DEFAULT):
                if isinstance(outcome, BaseException):
                    raise outcome
        except NATS_UNAVAILABLE as exc:
            log.warning("relay could not publish (will retry): %s", exc)
            return False
        for row in rows:
            if row.subject.endswith(".flow_cancel_requested"):
                request = _cancel_decoder.decode(row.payload)
                spares = request.fail_fast or request.spares_on_exit
                await self._purge_dispatches(row.msg_id.rsplit(".", 1)[0], spares)
        return True


def _outgoing(rows: list[OutboxRow]) -> list[Outgoing]:
    """Outbox rows as messages: events and dispatches carry their flow's trace context on to
    every reader, and their row's `Nats-Msg-Id`."""
    return [
        (
            row.subject,
            row.payload,
            {
                "Nats-Msg-Id": row.msg_id,
                "traceparent": telemetry.flow_traceparent(row.msg_id.rsplit(".", 1)[0]),
            },
        )
        for row in rows
    ]


async def _all_stored(sent: Sent, deadline: float) -> bool:
    """Whether JetStream acknowledged holding every message of `sent` by `deadline` (the
    loop's clock): one deadline for the batches a round waits for, so that a NATS outage
    costs a round the timeout once, not once per batch."""
    try:
        outcomes = await sent.acks(max(0.0, deadline - asyncio.get_running_loop().time()))
    except NATS_UNAVAILABLE as exc:
        log.debug("committed dispatches left to the relay", extra={"error": str(exc)})
        return False
    return not any(isinstance(outcome, BaseException) for outcome in outcomes)


class _CancelRequest(msgspec.Struct):
    """What the relay reads of a `flow_cancel_requested` event it published."""

    fail_fast: bool = False
    spares_on_exit: bool = False


_cancel_decoder = msgspec.json.Decoder(_CancelRequest)
