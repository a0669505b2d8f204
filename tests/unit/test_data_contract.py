"""The data layer's contract: PostgresData and its in-memory twin MemoryData answer alike.

Every test runs against both; the unit tests of the shell that use MemoryData rely on
exactly what is asserted here. The Postgres side also proves every named statement of
queries.sql prepares against the migrated schema (so a row type and its table agree).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from weir.embedded import EmbeddedPostgres
from weir_scheduler.data import (
    AppendBatch,
    ConcurrencyError,
    DataLayer,
    EventRow,
    FlowKey,
    FlowRow,
    Lock,
    NewSchedule,
    OutboxRow,
    TaskRow,
    TimerKey,
    TimerRow,
)
from weir_scheduler.data.databases import create_database, drop_database
from weir_scheduler.data.filters import FilterError
from weir_scheduler.data.memory import MemoryData
from weir_scheduler.data.postgres import PostgresData, create_pool
from weir_scheduler.data.queries import QUERIES, parse
from weir_scheduler.data.rows import BULK_ROWS, TaskKey, record_columns

from bench.measure import Q as MEASURE
from tests.conftest import fresh_database
from tests.inspection import Inspection, SessionState, inspecting
from tests.inspection import Q as INSPECTION

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)


@pytest.fixture(params=["postgres", "memory"])
async def data(request: pytest.FixtureRequest) -> AsyncIterator[DataLayer]:
    if request.param == "memory":
        yield MemoryData()
        return
    cluster: EmbeddedPostgres = request.getfixturevalue("postgres")  # tests/conftest.py
    url = await fresh_database(cluster)
    pool = await create_pool(url, min_size=1, max_size=4)
    layer = PostgresData(pool, url)
    await layer.migrate()
    try:
        yield layer
    finally:
        await pool.close()


def flow_row(flow_id: str, **fields: object) -> FlowRow:
    seq = int(str(fields.get("seq", 1)))
    values: dict[str, object] = {
        "id": flow_id,
        "name": "etl",
        "status": "running",
        "seq": seq,
        "task_count": 2,
        "created_at": NOW - HOUR,
        "updated_at": NOW - HOUR + timedelta(seconds=seq),
        "spec_digest": "d1",
        "errors": None,
        "tags": ["nightly"],
        "metadata": {"team": "data"},
        "start_at": None,
        "rerun_of": None,
        "unique_key": None,
        "finished_at": None,
        "params": {},
    }
    values.update(fields)
    return msgspec.convert(values, FlowRow)


def task_row(flow_id: str, name: str, position: int, **fields: object) -> TaskRow:
    values: dict[str, object] = {
        "flow_id": flow_id,
        "flow_created_at": NOW - HOUR,
        "name": name,
        "position": position,
        "status": "pending",
        "attempt": 0,
        "queue": "default",
        "depends": [],
        "dispatched_at": None,
        "started_at": None,
        "finished_at": None,
        "exit_code": None,
        "error_type": None,
        "error_message": None,
        "runner": None,
        "priority": 0,
        "failures": [],
        "retry_at": None,
        "outputs": [],
    }
    values.update(fields)
    return msgspec.convert(values, TaskRow)


def event(flow_id: str, seq: int, kind: str = "task_started") -> EventRow:
    body = {"id": f"{flow_id}.{seq}", "flow_id": flow_id, "seq": seq, "type": kind}
    return EventRow(f"{flow_id}.{seq}", flow_id, seq, kind, msgspec.Raw(msgspec.json.encode(body)))


def batch(
    events: list[EventRow],
    flows: list[FlowRow] = (),  # type: ignore[assignment]
    tasks: list[TaskRow] = (),  # type: ignore[assignment]
    cleared: list[TimerKey] = (),  # type: ignore[assignment]
    due: list[TimerRow] = (),  # type: ignore[assignment]
) -> AppendBatch:
    return AppendBatch(
        events=events,
        flows=list(flows),
        tasks=list(tasks),
        timers_cleared=list(cleared),
        timers_due=list(due),
        outbox=[OutboxRow(0, f"weir.evt.{e.flow_id}", e.id, bytes(e.data)) for e in events],
    )


async def submitted(data: DataLayer, flow_id: str, **fields: object) -> None:
    created = fields.get("created_at", NOW - HOUR)
    await data.append(
        batch(
            [event(flow_id, 1, "flow_submitted")],
            [flow_row(flow_id, **fields)],
            [
                task_row(flow_id, "extract", 0, flow_created_at=created),
                task_row(flow_id, "load", 1, depends=["extract"], flow_created_at=created),
            ],
        )
    )


# The log ---------------------------------------------------------------------------------


async def test_append_writes_events_projections_and_outbox_in_order(data: DataLayer) -> None:
    await submitted(data, "f1")
    ids = await data.append(batch([event("f1", 2), event("f1", 3)], [flow_row("f1", seq=3)]))
    assert len(ids) == 2 and ids[0] < ids[1]
    logged = await data.events_after({"f1": 1, "nobody": 0})
    assert [(e.flow_id, msgspec.json.decode(e.data)["seq"]) for e in logged] == [
        ("f1", 2),
        ("f1", 3),
    ]
    assert [msgspec.json.decode(d)["seq"] for d in await data.flow_events("f1")] == [1, 2, 3]
    assert await data.flow_digests(["f1", "nobody"]) == {"f1": ("d1", "running")}
    rows = await data.outbox_batch(10)
    assert [r.msg_id for r in rows] == ["f1.1", "f1.2", "f1.3"]
    assert rows[1].id == ids[0]
    await data.outbox_delete([rows[0].id])
    assert [r.msg_id for r in await data.outbox_batch(1)] == ["f1.2"]


async def test_young_dispatches_are_left_out_of_the_outbox_batch_on_request(
    data: DataLayer,
) -> None:
    await submitted(data, "f1")
    dispatched = batch([event("f1", 2, "task_dispatched")], [flow_row("f1", seq=2)])
    dispatch = OutboxRow(0, "weir.dispatch.default.f1", "f1.2-dispatch", b"{}")
    await data.append(msgspec.structs.replace(dispatched, outbox=[*dispatched.outbox, dispatch]))
    every = ["f1.1", "f1.2", "f1.2-dispatch"]
    assert [r.msg_id for r in await data.outbox_batch(10)] == every
    assert [r.msg_id for r in await data.outbox_batch(10, young_dispatches=60.0)] == every[:2]
    assert [r.msg_id for r in await data.outbox_batch(10, young_dispatches=0.0)] == every


async def test_a_seq_already_in_the_log_fails_the_whole_append(data: DataLayer) -> None:
    await submitted(data, "f1")
    with pytest.raises(ConcurrencyError):
        await data.append(
            batch([event("f2", 1), event("f1", 1)], [flow_row("f1", seq=9, status="failed")])
        )
    assert await data.flow_digests(["f1", "f2"]) == {"f1": ("d1", "running")}
    assert [r.msg_id for r in await data.outbox_batch(10)] == ["f1.1"]


async def test_a_flow_row_keeps_what_was_fixed_at_submit(data: DataLayer) -> None:
    await submitted(data, "f1")
    later = flow_row("f1", seq=2, status="succeeded", name="renamed", finished_at=NOW)
    done = task_row("f1", "load", 7, status="succeeded", attempt=1, queue="gpu", exit_code=0)
    await data.append(batch([event("f1", 2)], [later], [done]))
    view = await data.flow_view("f1")
    assert view is not None
    assert (view.name, view.status, view.seq, view.finished_at) == ("etl", "succeeded", 2, NOW)
    assert [(t.name, t.status, t.queue, t.depends) for t in view.tasks] == [
        ("extract", "pending", "default", []),
        ("load", "succeeded", "default", ["extract"]),
    ]
    assert view.tags == ["nightly"] and view.metadata == {"team": "data"}
    assert await data.flow_view("nobody") is None


async def test_an_update_changes_the_flow_rows_tags_metadata_start_and_params(
    data: DataLayer,
) -> None:
    await submitted(data, "f1", status="scheduled", start_at=NOW, params={"n": 1})
    changed = {"tags": ["urgent"], "metadata": {}, "start_at": NOW + HOUR, "params": {"n": 5}}
    await data.append(batch([event("f1", 2, "flow_updated")], [flow_row("f1", seq=2, **changed)]))
    view = await data.flow_view("f1")
    assert view is not None
    assert (view.tags, view.metadata, view.start_at, view.params) == tuple(changed.values())


# Timers ----------------------------------------------------------------------------------


async def test_a_claimed_timer_is_not_claimed_again_until_dropped(data: DataLayer) -> None:
    await submitted(data, "f1")
    now = datetime.now(UTC)  # not NOW, taken at import: the suite may run long before this
    due = [
        TimerRow("f1", "extract", "retry", 1, now - HOUR),
        TimerRow("f1", "load", "retry", 1, now + HOUR),
    ]
    await data.append(batch([event("f1", 2)], due=due))
    claimed = await data.claim_timers(10, 30.0)
    assert [(t.task, t.kind, t.attempt) for t in claimed] == [("extract", "retry", 1)]
    assert await data.claim_timers(10, 30.0) == []
    wait = await data.next_timer_in()
    assert wait is not None and 3000 < wait <= 3600  # the unclaimed one, an hour out
    await data.drop_fired_timers(claimed)
    await data.append(batch([event("f1", 3)], cleared=[TimerKey("f1", "load")]))
    assert await data.next_timer_in() is None


async def test_a_heartbeat_moves_a_lease_later_and_silence_counts_from_it(
    data: DataLayer,
) -> None:
    await submitted(data, "f1")
    lease = TimerRow("f1", "extract", "lease", 1, NOW - timedelta(seconds=50))
    await data.append(batch([event("f1", 2)], due=[lease]))
    silence = await data.attempt_silence("f1", "extract", 1, 60.0)
    assert silence is not None and silence >= 110
    await data.extend_leases([("f1", "extract", 1)], 60.0)
    silence = await data.attempt_silence("f1", "extract", 1, 60.0)
    assert silence is not None and silence < 5
    assert await data.attempt_silence("f1", "extract", 2, 60.0) is None


def logged(flow_id: str, seq: int, kind: str, **fields: Any) -> EventRow:
    body = {"id": f"{flow_id}.{seq}", "flow_id": flow_id, "seq": seq, "type": kind, **fields}
    return EventRow(f"{flow_id}.{seq}", flow_id, seq, kind, msgspec.Raw(msgspec.json.encode(body)))


async def cancelling_with_on_exit(data: DataLayer, flow_id: str, *spares: bool) -> None:
    """A flow with tasks "work" and on_exit "bye", both running (their leases set 50 s
    ago), then one `flow_cancel_requested` per item of `spares` (its `spares_on_exit`)."""
    spec = {"name": "etl", "tasks": [{"name": "work"}], "on_exit": {"name": "bye"}}
    tasks = [task_row(flow_id, "work", 0), task_row(flow_id, "bye", 1, depends=["work"])]
    await data.append(
        batch([logged(flow_id, 1, "flow_submitted", spec=spec)], [flow_row(flow_id)], tasks)
    )
    ago = NOW - timedelta(seconds=50)
    leases = [TimerRow(flow_id, n, "lease", 1, ago) for n in ("work", "bye")]
    cancels = [
        logged(flow_id, 2 + i, "flow_cancel_requested", reason="stop", spares_on_exit=spare)
        for i, spare in enumerate(spares)
    ]
    row = flow_row(flow_id, seq=1 + len(spares), status="cancelling")
    await data.append(batch(cancels, [row], due=leases))
    await data.extend_leases([(flow_id, "work", 1), (flow_id, "bye", 1)], 60.0)


async def test_a_cancelling_flows_leases_run_out_but_a_spared_on_exit_tasks(
    data: DataLayer,
) -> None:
    await cancelling_with_on_exit(data, "f1", True)
    work = await data.attempt_silence("f1", "work", 1, 60.0)
    bye = await data.attempt_silence("f1", "bye", 1, 60.0)
    assert work is not None and work >= 110, "a cancelled task's lease was extended"
    assert bye is not None and bye < 5, "the spared on_exit task's lease was not extended"
    await cancelling_with_on_exit(data, "f2", True, False)  # a second cancel spares nothing
    bye = await data.attempt_silence("f2", "bye", 1, 60.0)
    assert bye is not None and bye >= 110, "a second cancel still spared the on_exit task"


# Queues, unique keys ---------------------------------------------------------------------


async def test_queue_next_gives_each_flow_its_turn(data: DataLayer) -> None:
    await data.append(
        batch(
            [event("big", 1), event("small", 1)],
            [flow_row("big"), flow_row("small", created_at=NOW - timedelta(minutes=30))],
            [
                task_row("big", "a", 0, status="running", queue="gpu"),
                task_row("big", "b", 1, status="queued", queue="gpu"),
                task_row("big", "c", 2, status="queued", queue="gpu"),
                task_row("small", "x", 0, status="queued", queue="gpu"),
                task_row("small", "y", 1, status="queued", queue="gpu", priority=1),
            ],
        )
    )
    assert await data.queue_in_flight("gpu") == 1
    assert await data.queue_next("gpu", 10) == [
        ("small", "x"),
        ("big", "b"),
        ("big", "c"),
        ("small", "y"),
    ]
    assert await data.pending_flows() == 2


async def test_unique_holder_is_the_newest_flow_with_the_key(data: DataLayer) -> None:
    await submitted(data, "old", unique_key="k", created_at=NOW - 2 * HOUR)
    await submitted(data, "new", unique_key="k")
    await submitted(data, "other", unique_key="j")
    assert await data.unique_holder("k", ["running"], None) == ("new", "running")
    assert await data.unique_holder("k", ["pending"], None) is None
    assert await data.unique_holder("k", ["running"], NOW - timedelta(minutes=1)) is None


# Transactions and locks ------------------------------------------------------------------


async def test_a_failed_transaction_leaves_nothing(data: DataLayer) -> None:
    with pytest.raises(RuntimeError):
        async with data.transaction() as tx:
            await submitted(tx, "f1")
            raise RuntimeError("changed my mind")
    assert await data.flow_digests(["f1"]) == {}
    assert await data.outbox_batch(10) == []


async def test_holders_of_one_lock_name_go_one_after_another(data: DataLayer) -> None:
    order: list[str] = []

    async def hold(who: str, name: str) -> None:
        async with data.transaction() as tx:
            await tx.lock(Lock.QUEUE, name)
            order.append(f"{who} in")
            await asyncio.sleep(0.05)
            order.append(f"{who} out")

    await asyncio.gather(hold("a", "gpu"), hold("b", "gpu"))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    order.clear()
    await asyncio.gather(hold("a", "gpu"), hold("b", "cpu"))
    assert order[:2] in (["a in", "b in"], ["b in", "a in"])


async def test_one_relay_leads_at_a_time(data: DataLayer) -> None:
    first, second = data.leadership(), data.leadership()
    woken = asyncio.Event()
    assert await first.try_lead(woken.set)
    assert not await second.try_lead(lambda: None)
    await submitted(data, "f1")
    await asyncio.wait_for(woken.wait(), 5)
    assert [r.msg_id for r in await first.outbox_batch(10)] == ["f1.1"]
    await first.close()
    assert await second.try_lead(lambda: None)
    await second.close()


# Schedules -------------------------------------------------------------------------------


def schedule(
    name: str, next_run_at: datetime, tasks: list[dict[str, Any]] | None = None
) -> NewSchedule:
    """An hourly schedule of an "etl" flow of `tasks` (none unless given)."""
    spec = msgspec.json.encode({"name": "etl", "tasks": tasks or []}).decode()
    return NewSchedule(
        name=name,
        cron="0 * * * *",
        timezone="UTC",
        spec=spec,
        missed="skip",
        paused=False,
        next_run_at=next_run_at,
    )


async def test_a_due_schedule_is_held_by_the_transaction_that_read_it(data: DataLayer) -> None:
    view = await data.schedule_upsert(schedule("hourly", NOW - HOUR))
    assert (view.name, view.flow_name, view.paused) == ("hourly", "etl", False)
    await data.schedule_upsert(schedule("later", NOW + HOUR))
    async with data.transaction() as tx:
        assert [s.name for s in await tx.schedules_due(10)] == ["hourly"]
        async with data.transaction() as other:
            assert await other.schedules_due(10) == []
        await tx.schedule_advance("hourly", NOW + 2 * HOUR, NOW - HOUR)
    listed = await data.schedule_list()
    assert [(s.name, s.next_run_at, s.last_tick_at) for s in listed] == [
        ("hourly", NOW + 2 * HOUR, NOW - HOUR),
        ("later", NOW + HOUR, None),
    ]
    paused = await data.schedule_pause("later", True)
    assert paused is not None and paused.paused
    due_in = await data.schedule_next_in()
    assert due_in is not None and due_in > 3600
    assert await data.schedule_delete("later")
    assert not await data.schedule_delete("later")
    assert await data.schedule_pause("later", False) is None


# Read side and pruning -------------------------------------------------------------------


async def test_pages_and_queries_are_newest_first(data: DataLayer) -> None:
    for n in range(3):
        await submitted(data, f"f{n}", created_at=NOW - timedelta(minutes=10 - n))
    await submitted(data, "g", tags=["weekly"], status="failed")
    page = await data.flow_page(None, None, 2)
    assert [f.id for f in page] == ["f2", "f1"]
    after = FlowKey(page[-1].created_at, page[-1].id)
    assert [f.id for f in await data.flow_page(None, after, 10)] == ["f0", "g"]
    assert [f.id for f in await data.flow_page("failed", None, 10)] == ["g"]
    where = {"and": [{"tags_any": ["nightly"]}, {"not": {"name": "other"}}]}
    assert [f.id for f in await data.flow_query(where, after, 10)] == ["f0"]


async def test_queries_on_id_queue_scheduled_time_and_params(data: DataLayer) -> None:
    later = NOW + HOUR
    await submitted(data, "a", params={"date": "2026-12-01", "n": 3, "fast": True})
    await submitted(data, "b", params={"date": "2026-12-02", "n": 4}, start_at=later)
    gpu = task_row("c", "train", 0, queue="gpu", flow_created_at=NOW - 2 * HOUR)
    await data.append(batch([event("c", 1)], [flow_row("c", created_at=NOW - 2 * HOUR)], [gpu]))

    async def ids(where: object) -> list[str]:
        return sorted(f.id for f in await data.flow_query(where, None, 10))

    assert await ids({"id": "b"}) == ["b"]
    assert await ids({"id": ["a", "c", "nobody"]}) == ["a", "c"]
    assert await ids({"queue": "gpu"}) == ["c"]
    assert await ids({"queue": ["gpu", "default"]}) == ["a", "b", "c"]
    assert await ids({"not": {"queue": "gpu"}}) == ["a", "b"]
    assert await ids({"scheduled_after": (NOW + HOUR / 2).isoformat()}) == ["b"]
    assert await ids({"scheduled_before": (NOW + HOUR / 2).isoformat()}) == []
    assert await ids({"params": {"date": "2026-12-01"}}) == ["a"]
    assert await ids({"params": {"n": 4}}) == ["b"]
    assert await ids({"params": {"n": "4"}}) == []  # a string is not the number
    assert await ids({"params": {"fast": 1}}) == []  # true is not 1
    assert await ids({"and": [{"params": {"fast": True}}, {"id": ["a", "b"]}]}) == ["a"]
    with pytest.raises(FilterError, match=r"\$\.where\.param: unknown condition; use one of"):
        await ids({"param": {"n": 4}})


async def test_flow_listings_count_tasks_by_status(data: DataLayer) -> None:
    await submitted(data, "f1")
    done = task_row("f1", "extract", 0, status="succeeded", attempt=1)
    running = task_row("f1", "load", 1, status="running", attempt=1)
    await data.append(batch([event("f1", 2)], [flow_row("f1", seq=2)], [done, running]))
    await submitted(data, "f2", created_at=NOW - 2 * HOUR)
    (first, second) = await data.flow_page(None, None, 10)
    assert first.task_counts == {"succeeded": 1, "running": 1}
    assert second.task_counts == {"pending": 2}
    (queried,) = await data.flow_query({"id": "f1"}, None, 10)
    assert queried.task_counts == first.task_counts
    view = await data.flow_view("f1")
    assert view is not None and view.task_counts == first.task_counts


async def test_task_queries_cross_flows_newest_first_in_pages(data: DataLayer) -> None:
    for n, queue in enumerate(["gpu", "cpu", "gpu"]):
        flow_id = f"f{n}"
        created = NOW - timedelta(minutes=10 - n)
        load_queue = "gpu" if n == 2 else "cpu"
        tasks = [
            task_row(flow_id, "extract", 0, queue=queue, flow_created_at=created),
            task_row(flow_id, "load", 1, queue=load_queue, flow_created_at=created),
        ]
        await data.append(
            batch([event(flow_id, 1)], [flow_row(flow_id, created_at=created)], tasks)
        )
        ended = [msgspec.structs.replace(tasks[0], status="failed", attempt=1)]
        if n == 2:
            ended.append(msgspec.structs.replace(tasks[1], status="failed", attempt=1))
        await data.append(batch([event(flow_id, 2)], [flow_row(flow_id, seq=2)], ended))

    where = {"and": [{"status": "failed"}, {"queue": "gpu"}]}
    found = await data.task_query(where, None, 10)
    assert [(t.flow_id, t.name) for t in found] == [
        ("f2", "extract"),
        ("f2", "load"),
        ("f0", "extract"),
    ]
    assert found[0].flow_name == "etl" and found[0].attempt == 1
    page = await data.task_query(where, None, 1)
    after = TaskKey(page[0].flow_created_at, page[0].flow_id, page[0].position)
    rest = await data.task_query(where, after, 10)
    assert [(t.flow_id, t.name) for t in rest] == [("f2", "load"), ("f0", "extract")]
    everything = await data.task_query(None, None, 100)
    assert len(everything) == 6
    assert [t.name for t in await data.task_query({"flow": "f1"}, None, 10)] == [
        "extract",
        "load",
    ]
    named = {"and": [{"name": "load"}, {"flow_name": "etl"}, {"not": {"status": "failed"}}]}
    assert [t.flow_id for t in await data.task_query(named, None, 10)] == ["f1", "f0"]
    with pytest.raises(FilterError, match="use one of and, or, not, flow, flow_name"):
        await data.task_query({"tags_any": ["x"]}, None, 10)


async def test_prune_deletes_old_ended_flows_beyond_the_newest_kept(data: DataLayer) -> None:
    for n in range(3):
        finished = NOW - timedelta(days=3 - n)
        await submitted(data, f"f{n}", status="succeeded", finished_at=finished)
    await submitted(data, "live")
    pruned = await data.prune_batch(["succeeded"], 1, NOW - HOUR, 10)
    assert pruned == ["f0", "f1"]
    assert set(await data.flow_digests(["f0", "f1", "f2", "live"])) == {"f2", "live"}
    assert await data.flow_events("f0") == []
    await submitted(data, "f0")  # its ids are free again


async def test_ping_returns_while_the_database_answers(data: DataLayer) -> None:
    await data.ping()  # a database that is down: tests/chaos/test_health.py


def test_a_status_set_named_in_a_query_becomes_the_enums_values() -> None:
    sql = parse("-- name: q\nSELECT 1 FROM tasks WHERE status IN :ACTIVE_TASK_STATUSES")["q"]
    assert sql == "SELECT 1 FROM tasks WHERE status IN ('dispatched', 'running')"
    assert "::jsonb" in parse("-- name: q\nSELECT $1::jsonb")["q"]  # a cast is not a set
    with pytest.raises(ValueError, match="query q: unknown status set DONE_STATUSES"):
        parse("-- name: q\nSELECT 1 FROM tasks WHERE status IN :DONE_STATUSES")


# Postgres only ---------------------------------------------------------------------------


async def test_pooled_connections_come_back_without_session_state(database_url: str) -> None:
    """The pool hands a connection back without asyncpg's reset query (`create_pool`), so
    nothing the layer does may leave a lock, a LISTEN, a cursor or a setting on it for the
    next caller: after locks taken in transactions, a transaction that failed holding one,
    appends and a relay's lead, every connection of the pool is as it was opened."""
    pool = await create_pool(database_url, min_size=2, max_size=2)
    data = PostgresData(pool, database_url)
    await data.migrate()
    leader = data.leadership()
    try:
        assert await leader.try_lead(lambda: None)  # its own connection, not the pool's
        await submitted(data, "f1")
        async with data.transaction() as tx:
            await tx.lock(Lock.QUEUE, "gpu")
            await tx.lock(Lock.UNIQUE_KEY, "nightly")
            await tx.schedules_due(10)
        with pytest.raises(RuntimeError):
            async with data.transaction() as tx:
                await tx.lock(Lock.QUEUE, "gpu")
                raise RuntimeError("changed my mind")
        await data.claim_timers(10, 30.0)
        await data.outbox_delete([row.id for row in await data.outbox_batch(10)])
        async with pool.acquire() as first, pool.acquire() as second:
            for conn in (first, second):
                assert await Inspection(conn).session_state() == SessionState(0, 0, 0, [])
            # The check sees what a reset would have cleared: a session lock outlives release.
            await first.fetchval(QUERIES["try_session_lock"], 424242)
        async with pool.acquire() as first, pool.acquire() as second:
            held = [await Inspection(c).session_state() for c in (first, second)]
            assert sorted(s.advisory_locks for s in held) == [0, 1]
    finally:
        await leader.close()
        await pool.close()


async def test_every_named_statement_prepares_on_the_migrated_schema(database_url: str) -> None:
    """The data layer's statements, those the tests inspect the database with and those the
    benchmarks measure it with."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    await PostgresData(pool, database_url).migrate()
    await pool.close()
    statements = [
        *QUERIES.items(),
        *((f"tests/inspection.sql {name}", sql) for name, sql in INSPECTION.items()),
        *((f"bench/measure.sql {name}", sql) for name, sql in MEASURE.items()),
    ]
    async with inspecting(database_url) as db:
        failures = []
        for name, sql in statements:
            if "{database}" in sql:  # a database name is quoted in, not bound (databases.py)
                sql = sql.format(database='"prepare_check"')
            try:
                await db.conn.prepare(sql)
            except asyncpg.PostgresError as exc:
                failures.append(f"{name}: {exc}")
        assert failures == []
        for table, row_type in [("events", "EventRow"), ("flows", "FlowRow"), ("tasks", "TaskRow")]:
            columns = await db.table_columns(table)
            for column, _ in record_columns(BULK_ROWS[row_type]):
                assert column in columns, f"{row_type}.{column} is not a column of {table}"


async def test_a_database_whose_name_needs_quoting_is_created_once_and_dropped(
    postgres: EmbeddedPostgres,
) -> None:
    name = 'we"ird; DROP DATABASE postgres; --'
    await create_database(postgres.url, name)
    await create_database(postgres.url, name)  # a second time: already there, nothing to do
    async with inspecting(postgres.url_for(name)) as db:
        assert await db.current_database() == name
    await drop_database(postgres.url, name)
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(postgres.url_for(name))
