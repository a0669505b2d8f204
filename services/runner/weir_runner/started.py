"""DeferredStart: an attempt's `started` report, held back for a moment.

Most attempts of a busy queue end within milliseconds. Reporting `started` and `finished`
separately doubles what the scheduler decides and appends for them, so the runner holds the
`started` report for `WEIR_STARTED_DELAY` seconds: an attempt still running then reports its
start as before; one that ended sooner sends only its `finished` report, which always
carries `started_at`, and the scheduler records `task_started` (at that time) and the end
from it, in one append. The log keeps every event either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from weir.config import STARTED_DELAY_DEFAULT


class DeferredStart:
    """The start of one attempt: `started()` when it starts (the executor's callback),
    `settle()` before its `finished` report."""

    def __init__(
        self, publish: Callable[[datetime], Awaitable[None]], delay: float = STARTED_DELAY_DEFAULT
    ) -> None:
        self.publish = publish
        """Sends the `started` report for a start at the given time (until JetStream has it)."""
        self.delay = delay
        self.started_at: datetime | None = None
        self._pending: asyncio.Task[None] | None = None

    async def started(self) -> None:
        """The attempt started: report it after `delay` (at once when `delay` is 0). A
        second call (an executor that saw the start twice) changes nothing."""
        if self.started_at is not None:
            return
        self.started_at = datetime.now(UTC)
        if self.delay <= 0:
            await self.publish(self.started_at)
            return
        self._pending = asyncio.create_task(self._after_delay(self.started_at))

    async def _after_delay(self, at: datetime) -> None:
        await asyncio.sleep(self.delay)
        await self.publish(at)

    async def settle(self) -> datetime | None:
        """The attempt ended (or is handed back): stop a `started` report not yet sent and
        return when the attempt started (None: it never did), for its `finished` report.
        A report being published when this is called may or may not reach JetStream; the
        `finished` report carries the start either way."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        return self.started_at
