"""Queries, pruning and cron schedules on real Postgres + NATS."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import msgspec
from weir.client import Client, WeirError
from weir_proto.api import ScheduleRequest
from weir_proto.errors import ErrorCode
from weir_proto.events import FlowSubmitted
from weir_proto.spec import FlowSpec
from weir_scheduler.service import Scheduler

from tests.conftest import Services
from tests.flows import shell, task
from tests.inspection import inspecting
from tests.waiting import until

WAIT = 60.0


async def run_all(client: Client, specs: list[dict[str, Any]]) -> list[str]:
    ids = [await client.submit(spec) for spec in specs]
    await asyncio.wait_for(asyncio.gather(*(client.wait(i) for i in ids)), WAIT)
    return ids


async def test_query_combines_and_or_not_over_status_tags_metadata_and_time(
    client: Client,
) -> None:
    once = {"max_attempts": 1}
    started = datetime.now(UTC).isoformat()
    ids = await run_all(
        client,
        [
            {
                "id": "q-etl-ok",
                "name": "etl",
                "tags": ["nightly", "eu"],
                "metadata": {"owner": "ana"},
                "tasks": [task("a")],
            },
            {
                "id": "q-etl-bad",
                "name": "etl",
                "tags": ["nightly"],
                "metadata": {"owner": "bo"},
                "tasks": [task("a", "false", retry=once)],
            },
            {
                "id": "q-report",
                "name": "report",
                "tags": ["adhoc"],
                "metadata": {"owner": "ana"},
                "tasks": [task("a", "false", retry=once)],
            },
        ],
    )
    assert ids == ["q-etl-ok", "q-etl-bad", "q-report"]

    async def matching(where: Any) -> list[str]:
        return sorted(f.id for f in (await client.query(where)).flows)

    # failed AND (nightly OR NOT etl): without parentheses this would also match q-etl-ok
    assert await matching(
        {
            "and": [
                {"status": "failed"},
                {"or": [{"tags_any": ["nightly"]}, {"not": {"name": "etl"}}]},
            ]
        }
    ) == ["q-etl-bad", "q-report"]
    assert await matching({"tags_all": ["nightly", "eu"]}) == ["q-etl-ok"]
    assert await matching({"metadata": {"owner": "ana"}}) == ["q-etl-ok", "q-report"]
    assert await matching({"and": [{"created_after": started}, {"name": "report"}]}) == ["q-report"]
    assert await matching({"created_before": started}) == []
    page = await client.query(None, limit=2)
    assert len(page.flows) == 2 and page.next is not None
    rest = await client.query(None, limit=2, cursor=page.next)
    assert [f.id for f in page.flows + rest.flows] == ["q-report", "q-etl-bad", "q-etl-ok"]
    try:
        await client.query({"colour": "red"})
    except WeirError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST
        assert "$.where.colour: unknown condition" in exc.message
    else:
        raise AssertionError("an unknown condition must be refused")


async def test_prune_deletes_old_ended_flows_in_batches_and_keeps_the_newest(
    client: Client, services: Services
) -> None:
    ids = await run_all(
        client, [{"id": f"old-{i}", "name": "p", "tasks": [task("a")]} for i in range(5)]
    )
    async with inspecting(services.settings.database_url) as db:
        # the flows ran side by side: the newest are the last to have finished
        order = await db.flows_by_finish(ids)
        old, newest = order[:3], set(order[3:])
        live = await client.submit({"id": "live", "name": "p", "tasks": [task("a", "sleep", "5")]})
        assert await client.prune(older_than=0, keep_last=2) == 3
        remaining = {f.id async for f in client.list_all()}
        assert remaining == newest | {live}
        left = await db.event_count(old)
    assert left == 0
    assert await client.get_or_none(old[0]) is None
    try:
        await client.prune(older_than=0, statuses=["running"])
    except WeirError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST and "only ended flows are pruned" in exc.message
    else:
        raise AssertionError("pruning running flows must be refused")
    await client.cancel(live)


def every_second(name: str, missed: str = "skip") -> ScheduleRequest:
    flow = msgspec.convert({"name": "ticked", "tasks": [task("a")]}, FlowSpec)
    return ScheduleRequest(name=name, cron="* * * * * *", flow=flow, missed=missed)  # type: ignore[arg-type]


async def tick_flows(client: Client, schedule: str) -> list[str]:
    page = await client.query({"name": "ticked"}, limit=1000)
    return sorted(f.id for f in page.flows if f.id.startswith(f"{schedule}-"))


async def test_cron_makes_exactly_one_flow_per_tick_with_two_replicas(
    client: Client, second_scheduler: Scheduler
) -> None:
    view = await client.schedule(every_second("tick"))
    assert view.name == "tick" and not view.paused

    async def three_ticks() -> bool:
        return len(await tick_flows(client, "tick")) >= 3

    await until(three_ticks, "three ticks of a schedule firing every second")
    await client.schedule_action("pause", "tick")
    ids = await tick_flows(client, "tick")
    ticks = [datetime.strptime(i.split("-")[-1], "%Y%m%d%H%M%S") for i in ids]
    assert len(ids) >= 3
    assert all((b - a).total_seconds() == 1 for a, b in itertools.pairwise(ticks))
    listed = await client.schedules()
    assert [(s.name, s.paused, s.flow_name) for s in listed] == [("tick", True, "ticked")]
    await client.schedule_action("delete", "tick")
    assert await client.schedules() == []


async def test_missed_ticks_catch_up_or_skip(client: Client, services: Services) -> None:
    await client.schedule(
        msgspec.structs.replace(every_second("late"), missed="catch_up", paused=True)
    )
    await client.schedule(msgspec.structs.replace(every_second("skipper"), paused=True))
    async with inspecting(services.settings.database_url) as db:
        await db.schedules_overdue()
        await client.schedule_action("resume", "late")
        await client.schedule_action("resume", "skipper")

        async def fired() -> bool:
            return bool(await tick_flows(client, "late") and await tick_flows(client, "skipper"))

        await until(fired, "both resumed schedules fired")
        await client.schedule_action("pause", "late")
        await client.schedule_action("pause", "skipper")
    # Five missed ticks and the current one: all of them, or only the newest.
    assert len(await tick_flows(client, "late")) >= 6
    assert 1 <= len(await tick_flows(client, "skipper")) <= 2


async def test_bad_schedules_are_refused_with_reasons(client: Client) -> None:
    cases = [
        (msgspec.structs.replace(every_second("ok"), cron="every day"), "is not a cron expression"),
        (msgspec.structs.replace(every_second("ok"), timezone="Mars/Base"), "is not a time zone"),
        (every_second("Bad Name"), "must be a DNS-1123 label"),
    ]
    for request, words in cases:
        try:
            await client.schedule(request)
        except WeirError as exc:
            assert exc.code == ErrorCode.BAD_REQUEST and words in exc.message, exc.message
        else:
            raise AssertionError(f"{words} must be refused")
    try:
        await client.schedule_action("pause", "nope")
    except WeirError as exc:
        assert exc.code == ErrorCode.NOT_FOUND


async def test_a_ticks_flow_sees_the_tick_time_and_the_schedules_params(client: Client) -> None:
    check = 'test "$WEIR_PARAM_at" = "$1" && test "$1" = "$2" && test "$WEIR_PARAM_n" = 7'
    flow = msgspec.convert(
        {
            "name": "stamped",
            "params": {"at": {"type": "string"}, "n": {"type": "int", "default": 1}},
            "tasks": [shell("a", check, "sh", "{{ params.at }}", "{{ schedule.time }}")],
        },
        FlowSpec,
    )
    request = ScheduleRequest(
        name="stamped",
        cron="* * * * * *",
        flow=flow,
        params={"at": "{{ schedule.time }}", "n": 7},
    )
    view = await client.schedule(request)
    assert view.params == {"at": "{{ schedule.time }}", "n": 7}

    async def ticked() -> list[str]:
        page = await client.query({"name": "stamped"}, limit=10)
        return [f.id for f in page.flows]

    async def any_tick() -> bool:
        return bool(await ticked())

    await until(any_tick, "a tick of a schedule with params")
    await client.schedule_action("delete", "stamped")
    flow_id = (await ticked())[-1]
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert type(final).__name__ == "FlowSucceeded", final
    tick = datetime.strptime(flow_id.removeprefix("stamped-"), "%Y%m%d%H%M%S")
    events = [event async for event in client.events(flow_id)]
    first = events[0]
    assert isinstance(first, FlowSubmitted)
    stamp = tick.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first.spec.arguments == {"at": stamp, "n": 7}
    assert first.spec.tasks[0].cmd[-1] == stamp


async def test_a_schedule_with_bad_params_is_refused_with_every_problem(client: Client) -> None:
    flow = msgspec.convert(
        {"name": "p", "params": {"n": {"type": "int"}}, "tasks": [task("a")]}, FlowSpec
    )
    request = ScheduleRequest(name="bad", cron="0 3 * * *", flow=flow, params={"n": "x", "m": 1})
    try:
        await client.schedule(request)
    except WeirError as exc:
        assert exc.code == "bad_request", exc.message
        paths = sorted(d.path for d in exc.details)
        assert paths == ["$.arguments.m", "$.arguments.n"], exc.details
    else:
        raise AssertionError("bad params must be refused")
    assert [s.name for s in await client.schedules()] == []


async def test_query_flows_by_id_queue_and_params_and_tasks_across_flows(
    client: Client,
) -> None:
    once = {"max_attempts": 1}
    params = {"day": {"type": "string"}, "n": {"type": "int", "default": 1}}
    ids = await run_all(
        client,
        [
            {
                "id": "pq-ok",
                "name": "pq",
                "params": params,
                "arguments": {"day": "2026-12-01"},
                "tasks": [task("a"), task("b", depends=["a"])],
            },
            {
                "id": "pq-bad",
                "name": "pq",
                "params": params,
                "arguments": {"day": "2026-12-02", "n": 3},
                "tasks": [task("a"), task("b", "false", depends=["a"], retry=once)],
            },
        ],
    )
    verdict = await client.submit(
        {"id": "pq-parked", "name": "pq", "tasks": [task("a", queue="nobody-serves")]},
        verdict=True,
    )
    parked = verdict.flow_id

    async def matching(where: Any) -> list[str]:
        return sorted(f.id for f in (await client.query(where)).flows)

    assert await matching({"id": ["pq-ok", "pq-parked", "nope"]}) == ["pq-ok", "pq-parked"]
    assert await matching({"queue": "nobody-serves"}) == [parked]
    assert await matching({"params": {"day": "2026-12-02"}}) == ["pq-bad"]
    assert await matching({"and": [{"params": {"n": 1}}, {"name": "pq"}]}) == ["pq-ok"]
    (bad,) = (await client.query({"id": "pq-bad"})).flows
    assert bad.task_counts == {"succeeded": 1, "failed": 1}
    failed = await client.tasks({"and": [{"status": "failed"}, {"flow": [*ids, parked]}]})
    assert [(t.flow_id, t.name, t.error_type) for t in failed.tasks] == [
        ("pq-bad", "b", "exit_code")
    ]
    page = await client.tasks({"flow": ids}, limit=3)
    rest = await client.tasks({"flow": ids}, limit=3, cursor=page.next)
    newest_first = [f.id for f in (await client.query({"id": ids})).flows]
    assert [(t.flow_id, t.name) for t in page.tasks + rest.tasks] == [
        (flow_id, name) for flow_id in newest_first for name in ("a", "b")
    ]
    assert rest.next is None
    try:
        await client.tasks({"tags_any": ["x"]})
    except WeirError as exc:
        assert exc.code == "bad_request" and "use one of and, or, not, flow," in exc.message
    else:
        raise AssertionError("a flow condition in a task query must be refused")
    await client.cancel(parked)
