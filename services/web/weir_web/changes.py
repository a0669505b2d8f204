"""The flow list's live feed: which flows changed status, pushed as they change.

One ordered JetStream consumer per weir-web process reads `weir.events.>` (headers only: the
subject names the flow and the event type, which is all the feed needs) from the moment the
first follower arrives until the last one leaves; each follower (an SSE stream of
`GET /api/v1/flows`) gets its own bounded set of changed flow ids, coalesced per flow, so a
slow browser never holds the consumer back nor grows weir-web's memory: past
FOLLOWER_PENDING_MAX distinct flows it is told to refresh everything instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import get_args

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from weir_proto import subjects
from weir_proto.events import FlowEvent
from weir_proto.ids import is_dns_label

log = logging.getLogger("weir.web")

STEADY_EVENTS = frozenset(
    {
        "task_taken_over",
        "task_succeeded",
        "task_attempt_failed",
        "task_snoozed",
        "task_cancelled",
        "task_failed",
        "task_expanded",
        "task_condition_read",
    }
)
"""The event types after which a flow's status is what it was before
(weir_proto.status.flow_status_after; tests/web/test_changes.py holds them to it)."""
EVENT_TYPES = frozenset(str(kind.__struct_config__.tag) for kind in get_args(FlowEvent))
STATUS_EVENTS = EVENT_TYPES - STEADY_EVENTS
"""The event types that can change a flow's status: every other one, so a new event type is
pushed unless it is known not to change a status."""
FOLLOWER_PENDING_MAX = 1000
"""Distinct changed flows held for one follower before it is told to refresh everything."""


@dataclass(frozen=True, slots=True)
class Change:
    flow_id: str
    type: str


@dataclass(frozen=True, slots=True)
class Batch:
    """What changed since a follower last asked: the latest event type of each flow, or
    `overflowed` when more flows changed than it may hold (refresh everything)."""

    changes: tuple[Change, ...]
    overflowed: bool


class Follower:
    """One follower's changes not yet sent."""

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}
        self._overflowed = False
        self._ready = asyncio.Event()

    def offer(self, change: Change) -> None:
        if self._overflowed:
            return
        if change.flow_id not in self._pending and len(self._pending) >= FOLLOWER_PENDING_MAX:
            self._pending.clear()
            self._overflowed = True
        else:
            self._pending[change.flow_id] = change.type
        self._ready.set()

    async def batches(self) -> AsyncIterator[Batch]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            pending, self._pending = self._pending, {}
            overflowed, self._overflowed = self._overflowed, False
            yield Batch(tuple(Change(f, t) for f, t in pending.items()), overflowed)


def change_of(subject: str) -> Change | None:
    """The change an event's subject (`weir.events.<flow_id>.<type>`) stands for, if any."""
    prefix, _, rest = subject.partition(f"{subjects.EVENTS_PREFIX}.")
    flow_id, _, kind = rest.partition(".")
    if prefix or kind not in STATUS_EVENTS or not is_dns_label(flow_id):
        return None
    return Change(flow_id, kind)


class FlowChanges:
    """The feed: one consumer shared by every follower, there only while someone follows."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._followers: set[Follower] = set()
        self._subscription: JetStreamContext.PushSubscription | None = None
        self._lock = asyncio.Lock()

    @property
    def followers(self) -> int:
        return len(self._followers)

    @asynccontextmanager
    async def follow(self) -> AsyncIterator[Follower]:
        """A follower, fed from the moment this returns (the consumer exists by then)."""
        follower = Follower()
        async with self._lock:
            if self._subscription is None:
                self._subscription = await self._js.subscribe(
                    f"{subjects.EVENTS_PREFIX}.>",
                    stream=subjects.STREAM_EVENTS,
                    cb=self._deliver,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                    headers_only=True,
                )
            self._followers.add(follower)
        try:
            yield follower
        finally:
            self._followers.discard(follower)
            async with self._lock:
                if not self._followers:
                    await self._stop()

    async def close(self) -> None:
        async with self._lock:
            self._followers.clear()
            await self._stop()

    async def _stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _deliver(self, msg: Msg) -> None:
        change = change_of(msg.subject)
        if change is None:
            return
        for follower in self._followers:
            follower.offer(change)
