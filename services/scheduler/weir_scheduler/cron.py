"""Cron schedules: `CronTicker` turns each due tick of a schedule into exactly one flow.

A schedule row is claimed with `FOR UPDATE SKIP LOCKED`, so one replica handles a given
schedule at a time. The flow of a tick gets the id `<schedule>-<tick as YYYYMMDDHHMMSS>`
and the same spec every time, so a tick submitted twice (a replica died before it moved the
schedule on) is one flow. Missed ticks (the scheduler was down) are either all run
(`catch_up`, up to CATCH_UP_MAX) or dropped except the latest (`skip`).

A schedule's `params` are stored as its flow's `arguments`; `{{ schedule.time }}` (the
tick's time, RFC 3339 in the schedule's time zone) is filled in before each tick's flow is
submitted, in the same places as `{{ params.NAME }}` and in string arguments, as text
inside that one string: never through a shell, never evaluated. The submitted spec holds
the filled-in text, so the log records what ran and a rerun runs the same tick again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import croniter
from weir.supervisor import DueWork
from weir_proto.errors import SpecError, WeirException
from weir_proto.ids import is_schedule_name
from weir_proto.spec import EnvVar, FlowSpec, Input, Output, TaskSpec

from weir_scheduler.data import DataLayer
from weir_scheduler.planner import Limits, Rejected, plan
from weir_scheduler.submissions import Submission, SubmissionHandler

log = logging.getLogger("weir.scheduler.cron")

CATCH_UP_MAX = 100
"""A schedule that missed more ticks than this runs only the newest CATCH_UP_MAX."""
CRON_BATCH = 50
CRON_IDLE_POLL_MAX = 1.0


SCHEDULE_TIME = re.compile(r"\{\{\s*schedule\.time\s*\}\}")
"""`{{ schedule.time }}`: the tick's time in the flow of a schedule."""


class ScheduleError(WeirException, ValueError):
    """A schedule that cannot be created; `errors` lists each problem of its flow."""

    def __init__(self, message: str, errors: list[SpecError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def next_tick(cron: str, timezone: str, after: datetime) -> datetime:
    zone = ZoneInfo(timezone)
    nxt: datetime = croniter(cron, after.astimezone(zone)).get_next(datetime)
    return nxt.astimezone(UTC)


def validate(
    name: str,
    cron: str,
    timezone: str,
    spec: FlowSpec,
    limits: Limits,
    now: datetime,
) -> None:
    """Refuse a schedule whose name, cron or time zone is wrong, or whose flow (with its
    params, `{{ schedule.time }}` filled with the next tick) would be rejected: every
    problem of the flow at once, in `errors`."""
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
    tick = next_tick(cron, timezone, now)
    try:
        plan(for_tick(spec, tick_flow_id(name, tick), tick, timezone), limits)
    except Rejected as rejected:
        raise ScheduleError(
            f'schedule "{name}": its flow would be rejected: '
            + "; ".join(e.message for e in rejected.errors),
            list(rejected.errors),
        ) from None


def schedule_time(tick: datetime, timezone: str) -> str:
    """The tick as RFC 3339 text in the schedule's time zone (`2026-12-01T03:00:00+01:00`,
    `...Z` in UTC), so its date is the schedule's local date."""
    text = tick.astimezone(ZoneInfo(timezone)).isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def for_tick(spec: FlowSpec, flow_id: str, tick: datetime, timezone: str) -> FlowSpec:
    """The flow a tick submits: its id, and `{{ schedule.time }}` replaced by the tick's
    time in `cmd` items, `env` values, `image`, artifact paths and string arguments."""
    when = schedule_time(tick, timezone)

    def fill(text: str) -> str:
        return SCHEDULE_TIME.sub(lambda _: when, text) if "{{" in text else text

    def fill_task(task: TaskSpec) -> TaskSpec:
        return msgspec.structs.replace(
            task,
            cmd=[fill(arg) for arg in task.cmd],
            image=fill(task.image) if task.image is not None else None,
            env=[
                EnvVar(name=v.name, value=fill(v.value), from_secret=v.from_secret)
                if v.value is not None
                else v
                for v in task.env
            ],
            inputs=[Input(from_=i.from_, path=fill(i.path)) for i in task.inputs],
            outputs=[Output(name=o.name, path=fill(o.path)) for o in task.outputs],
        )

    defaults = spec.defaults
    if defaults is not None and defaults.image is not None:
        defaults = msgspec.structs.replace(defaults, image=fill(defaults.image))
    return msgspec.structs.replace(
        spec,
        id=flow_id,
        tasks=[fill_task(t) for t in spec.tasks],
        on_exit=fill_task(spec.on_exit) if spec.on_exit is not None else None,
        defaults=defaults,
        arguments=_filled_arguments(spec.arguments, fill),
    )


def _filled_arguments(arguments: Mapping[str, Any], fill: Callable[[str], str]) -> dict[str, Any]:
    return {k: fill(v) if isinstance(v, str) else v for k, v in arguments.items()}


def with_params(spec: FlowSpec, params: Mapping[str, Any]) -> FlowSpec:
    """The flow a schedule stores: its `arguments` with the schedule's params over them."""
    return msgspec.structs.replace(spec, arguments={**spec.arguments, **params})


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


class CronTicker(DueWork):
    """The `cron` service: submits the flows of a batch of due schedule ticks, then waits
    until the next tick is due."""

    name = "cron"
    due_floor = 0.01
    idle_max = CRON_IDLE_POLL_MAX
    batch = CRON_BATCH

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

    async def work_due(self) -> int:
        return await self.tick()

    async def next_due_in(self) -> float | None:
        return await self.data.schedule_next_in()

    async def tick(self) -> int:
        """Submit the flows of every due tick; returns how many schedules were handled."""
        now = self.clock()
        async with self.data.transaction() as tx:
            due = await tx.schedules_due(CRON_BATCH)
            for schedule in due:
                ticks = due_ticks(
                    schedule.cron, schedule.timezone, schedule.next_run_at, now, schedule.missed
                )
                for tick in ticks:
                    flow_id = tick_flow_id(schedule.name, tick)
                    data = _tick_spec(schedule.spec, flow_id, tick, schedule.timezone)
                    await self.submissions.submit(Submission(data, flow_id))
                    self.submitted += 1
                following = next_tick(schedule.cron, schedule.timezone, ticks[-1])
                await tx.schedule_advance(schedule.name, following, ticks[-1])
                log.info(
                    "schedule fired",
                    extra={"schedule": schedule.name, "ticks": len(ticks), "next": following},
                )
        return len(due)


def _tick_spec(stored: str, flow_id: str, tick: datetime, timezone: str) -> bytes:
    """The submit of one tick. A stored spec this version cannot read (it was checked when
    the schedule was created) is submitted as it is, so the flow's rejection says why."""
    try:
        spec = msgspec.json.decode(stored, type=FlowSpec)
    except msgspec.ValidationError:
        return msgspec.json.encode({**msgspec.json.decode(stored), "id": flow_id})
    return msgspec.json.encode(for_tick(spec, flow_id, tick, timezone))
