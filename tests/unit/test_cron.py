"""Cron schedules with params and `{{ schedule.time }}`: what a tick submits, and what a
schedule's creation refuses (every problem at once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from weir_proto.spec import FlowSpec
from weir_scheduler.cron import (
    CronTicker,
    ScheduleError,
    for_tick,
    schedule_time,
    validate,
    with_params,
)
from weir_scheduler.data import NewSchedule
from weir_scheduler.planner import Limits, Rejected, plan

from tests.unit.test_scheduler_shell import Shell

TICK = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def spec(**fields: object) -> FlowSpec:
    doc = {
        "name": "etl",
        "params": {"date": {"type": "string"}, "rows": {"type": "int", "default": 3}},
        "tasks": [
            {
                "name": "load",
                "cmd": ["load", "--at={{ schedule.time }}", "--date", "{{ params.date }}"],
                "image": "etl:{{schedule.time}}",
                "env": [
                    {"name": "AT", "value": "{{ schedule.time }}"},
                    {"name": "KEY", "fromSecret": "key"},
                ],
                "outputs": [{"name": "day", "path": "out/{{ schedule.time }}.csv"}],
            }
        ],
        "on_exit": {"name": "report", "cmd": ["echo", "{{ schedule.time }}"]},
        **fields,
    }
    return msgspec.convert(doc, FlowSpec)


def test_schedule_time_is_rfc3339_in_the_schedules_zone() -> None:
    assert schedule_time(TICK, "UTC") == "2026-12-01T02:00:00Z"
    # 23:00 UTC is already the next day in Paris: the date a nightly ETL means.
    late = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert schedule_time(late, "Europe/Paris") == "2026-12-01T00:00:00+01:00"
    assert datetime.fromisoformat(schedule_time(late, "Europe/Paris")) == late


def test_a_tick_fills_schedule_time_as_whole_strings_everywhere_params_go() -> None:
    ticked = for_tick(
        with_params(spec(), {"date": "{{ schedule.time }}", "rows": 5}), "nightly-1", TICK, "UTC"
    )
    at = "2026-12-01T02:00:00Z"
    (load,) = ticked.tasks
    assert ticked.id == "nightly-1"
    assert load.cmd == ["load", f"--at={at}", "--date", "{{ params.date }}"]
    assert load.image == f"etl:{at}"
    assert [(v.name, v.value, v.from_secret) for v in load.env] == [
        ("AT", at, None),
        ("KEY", None, "key"),
    ]
    assert load.outputs[0].path == f"out/{at}.csv"
    assert ticked.on_exit is not None and ticked.on_exit.cmd == ["echo", at]
    assert ticked.arguments == {"date": at, "rows": 5}
    planned = plan(ticked, Limits())
    assert planned.params == {"date": at, "rows": 5}
    assert planned.tasks["load"].cmd[3] == at


def test_schedule_time_is_text_never_evaluated() -> None:
    hostile = with_params(spec(), {"date": "$(rm -rf /); {{ schedule.time }}"})
    ticked = for_tick(hostile, "n-1", TICK, "UTC")
    assert ticked.arguments["date"] == "$(rm -rf /); 2026-12-01T02:00:00Z"
    assert plan(ticked, Limits()).tasks["load"].cmd[3] == ticked.arguments["date"]


def test_a_schedule_with_bad_params_is_refused_with_every_problem() -> None:
    bad = with_params(spec(), {"rows": "many", "colour": "red"})
    with pytest.raises(ScheduleError) as refused:
        validate("nightly", "0 3 * * *", "UTC", bad, Limits(), TICK)
    messages = [e.message for e in refused.value.errors]
    assert len(messages) == 3, messages
    assert any('parameter "rows" is int: expected a whole number' in m for m in messages)
    assert any('unknown parameter "colour"' in m for m in messages)
    assert any('parameter "date" is required' in m for m in messages)
    assert str(refused.value).startswith('schedule "nightly": its flow would be rejected: ')
    good = with_params(spec(), {"date": "{{ schedule.time }}"})
    validate("nightly", "0 3 * * *", "UTC", good, Limits(), TICK)  # accepted


def test_schedule_time_outside_a_schedule_says_where_it_works() -> None:
    with pytest.raises(Rejected) as rejected:
        plan(spec(arguments={"date": "d"}), Limits())
    messages = [e.message for e in rejected.value.errors]
    assert messages and all("only in the flows of a cron schedule" in m for m in messages)
    unknown = with_params(spec(), {"date": "d"})
    unknown.tasks[0].cmd.append("{{ schedule.name }}")
    with pytest.raises(ScheduleError) as refused:
        validate("nightly", "0 3 * * *", "UTC", unknown, Limits(), TICK)
    (problem,) = refused.value.errors
    assert "{{ schedule.name }} is filled only" in problem.message
    assert problem.path == "$.tasks[0].cmd[4]"


async def test_a_ticks_flow_gets_the_schedules_params_and_the_tick_time() -> None:
    shell = Shell()
    shell.clock.now = TICK + timedelta(minutes=30)
    stored = with_params(spec(), {"date": "{{ schedule.time }}"})
    await shell.data.schedule_upsert(
        NewSchedule(
            name="nightly",
            cron="0 * * * *",
            timezone="Europe/Paris",
            spec=msgspec.json.encode(stored).decode(),
            missed="skip",
            paused=False,
            next_run_at=TICK,
        )
    )
    (listed,) = await shell.data.schedule_list()
    assert listed.params == {"date": "{{ schedule.time }}"}
    assert await CronTicker(shell.data, shell.submissions, shell.clock).tick() == 1
    (dispatch,) = await shell.dispatches()
    assert dispatch.flow_id == "nightly-20261201020000"
    assert dispatch.task.cmd[:2] == ["load", "--at=2026-12-01T03:00:00+01:00"]
    assert dispatch.task.cmd[3] == "2026-12-01T03:00:00+01:00"
    env = {v.name: v.value for v in dispatch.task.env}
    assert env["WEIR_PARAM_date"] == "2026-12-01T03:00:00+01:00"
    assert env["WEIR_PARAM_rows"] == "3"
