"""Cron schedules: `CronTicker` turns each due tick of a schedule into exactly one flow.

A schedule row is claimed with `FOR UPDATE SKIP LOCKED`, so one replica handles a given
schedule at a time. The flow of a tick gets the id `<schedule>-<tick as YYYYMMDDHHMMSS>`
and the same spec every time, so a tick submitted twice (a replica died before it moved the
schedule on) is one flow. Missed ticks (the scheduler was down) are either all run
(`catch_up`, up to CATCH_UP_MAX) or dropped except the latest (`skip`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import croniter
from weir_proto.errors import WeirException
from weir_proto.ids import is_schedule_name
from weir_proto.spec import FlowSpec

from weir_scheduler.data import DataLayer
from weir_scheduler.planner import Limits, Rejected, plan
from weir_scheduler.submissions import Submission, SubmissionHandler

log = logging.getLogger("weir.scheduler.cron")

CATCH_UP_MAX = 100
"""A schedule that missed more ticks than this runs only the newest CATCH_UP_MAX."""
CRON_BATCH = 50
CRON_IDLE_POLL_MAX = 1.0


class ScheduleError(WeirException, ValueError):
    pass


def next_tick(cron: str, timezone: str, after: datetime) -> datetime:
    zone = ZoneInfo(timezone)
    nxt: datetime = croniter(cron, after.astimezone(zone)).get_next(datetime)
    return nxt.astimezone(UTC)


def validate(name: str, cron: str, timezone: str, spec: FlowSpec, limits: Limits) -> None:
    if not is_schedule_name(name):
        raise ScheduleError(
            f'schedule name "{name[:80]}" must be a DNS-1123 label of at most 40 characters'
        )
    if not croniter.is_valid(cron):
        raise ScheduleError(f'"{cron[:80]}" is not a cron expression (e.g. "0 3 * * *")')
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f'"{timezone[:80]}" is not a time zone (e.g. "Europe/Paris")') from None
    if spec.id is not None:
        raise ScheduleError("the flow of a schedule must not set id: each tick gets its own")
    try:
        plan(spec, limits)
    except Rejected as rejected:
        raise ScheduleError("; ".join(e.message for e in rejected.errors)) from None


def tick_flow_id(schedule: str, tick: datetime) -> str:
    return f"{schedule}-{tick.astimezone(UTC):%Y%m%d%H%M%S}"


def due_ticks(
    cron: str, timezone: str, first: datetime, now: datetime, missed: str
) -> list[datetime]:
    """The ticks from `first` (the schedule's next_run_at) up to `now`."""
    ticks = [first]
    while len(ticks) < 100_000:
        following = next_tick(cron, timezone, ticks[-1])
        if following > now:
            break
        ticks.append(following)
    if missed == "skip":
        return ticks[-1:]
    return ticks[-CATCH_UP_MAX:]


class CronTicker:
    def __init__(
        self,
        data: DataLayer,
        submissions: SubmissionHandler,
        clock: Callable[[], datetime],
    ) -> None:
        self.data = data
        self.submissions = submissions
        self.clock = clock
        self.submitted = 0

    async def run_once(self) -> None:
        """One round of the supervised `cron` loop: submit every due tick, then wait until
        the next is due (a full batch: go on at once). Errors are the supervisor's."""
        if await self.tick() < CRON_BATCH:
            await asyncio.sleep(await self._until_next())

    async def _until_next(self) -> float:
        due_in = await self.data.schedule_next_in()
        if due_in is None:
            return CRON_IDLE_POLL_MAX
        return min(max(due_in, 0.01), CRON_IDLE_POLL_MAX)

    async def tick(self) -> int:
        """Submit the flows of every due tick; returns how many schedules were handled."""
        now = self.clock()
        async with self.data.transaction() as tx:
            due = await tx.schedules_due(CRON_BATCH)
            for schedule in due:
                ticks = due_ticks(
                    schedule.cron, schedule.timezone, schedule.next_run_at, now, schedule.missed
                )
                doc = msgspec.json.decode(schedule.spec)
                for tick in ticks:
                    flow_id = tick_flow_id(schedule.name, tick)
                    data = msgspec.json.encode({**doc, "id": flow_id})
                    await self.submissions.submit(Submission(data, flow_id))
                    self.submitted += 1
                following = next_tick(schedule.cron, schedule.timezone, ticks[-1])
                await tx.schedule_advance(schedule.name, following, ticks[-1])
                log.info(
                    "schedule fired",
                    extra={"schedule": schedule.name, "ticks": len(ticks), "next": following},
                )
        return len(due)
