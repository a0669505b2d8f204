"""Stepping in on a flow on real Postgres + NATS and a local runner: pause holds new
dispatches (running attempts finish and are recorded, a retry falling due waits), resume
releases them; retry runs a failed task of a failed flow again until the flow succeeds;
update changes a flow before its start and is refused after; each refusal says why."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from weir.client import Client, WeirError
from weir.config import Settings
from weir_proto.errors import ErrorCode
from weir_proto.events import TaskDispatched, TaskExpanded, event_type

from tests.artifacts.helpers import weir
from tests.flows import (
    WAIT,
    all_succeeded,
    ended,
    finish,
    reached,
    scheduled,
    shell,
    task,
    tasks_of,
    types,
    waits_for,
    writes_status,
)
from tests.inspection import inspecting
from tests.integration.test_cancel import one_slot
from tests.integration.test_fanout import collector, listing, mapped
from tests.waiting import until

__all__ = ["one_slot"]  # fixture

ONCE = {"max_attempts": 1}


def gated(gate: Path, then: str = "true") -> str:
    """A script that waits until the file `gate` exists, then runs `then`."""
    return f"{waits_for(gate)}; {then}"


async def submitted(client: Client, spec: dict[str, Any]) -> str:
    """Submit and wait until the scheduler has recorded the flow."""
    flow_id = await client.submit(spec)
    await reached(client, flow_id, "flow_submitted")
    return flow_id


async def refused(call: Any, code: ErrorCode = ErrorCode.CONFLICT) -> str:
    with pytest.raises(WeirError) as caught:
        await call
    assert caught.value.code == code, caught.value
    return caught.value.message


async def test_pause_holds_new_dispatches_and_resume_releases_them(
    client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    spec = {"name": "held", "tasks": [shell("a", gated(gate)), task("b", depends=["a"])]}
    flow_id = await client.submit(spec)
    await reached(client, flow_id, "task_started")
    paused = await client.pause(flow_id, "hold on")
    assert (paused.status, paused.already) == ("paused", False)
    assert (await client.pause(flow_id)).already, "a second pause changes nothing"

    gate.touch()  # `a` ends while the flow is paused: recorded, and `b` is not handed out
    await reached(client, flow_id, "task_succeeded")
    assert (await client.get(flow_id)).status == "paused"
    assert await tasks_of(client, flow_id) == {"a": ("succeeded", 1), "b": ("pending", 0)}

    resumed = await client.resume(flow_id)
    assert resumed.status == "running"
    events = await ended(client, flow_id)
    kinds = types(events)
    assert kinds[-1] == "flow_succeeded"
    b_dispatched = next(
        i
        for i, e in enumerate(events)
        if event_type(e) == "task_dispatched" and e.task == "b"  # type: ignore[union-attr]
    )
    assert kinds.index("flow_paused") < kinds.index("task_succeeded")
    assert kinds.index("flow_resumed") < b_dispatched
    assert events[kinds.index("flow_paused")].reason == "hold on"  # type: ignore[union-attr]


async def test_a_retry_falling_due_during_a_pause_is_dispatched_at_resume(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    gate, mark = tmp_path / "gate", tmp_path / "mark"
    quick = {"max_attempts": 2, "backoff": {"strategy": "constant", "base": 0.2, "jitter": None}}
    fails_once = f'test -e "{mark}" || {{ touch "{mark}"; exit 1; }}'
    spec = {"name": "backoff", "tasks": [shell("r", gated(gate, fails_once), retry=quick)]}
    flow_id = await client.submit(spec)
    await reached(client, flow_id, "task_started")
    await client.pause(flow_id)
    gate.touch()
    failed = await reached(client, flow_id, "task_attempt_failed")

    async def retry_timer_fired() -> bool:  # the timers projection drops a fired timer
        async with inspecting(settings.database_url) as db:
            return not await db.timer_count(flow_id, "retry")

    await until(retry_timer_fired, "the retry timer fired during the pause")
    assert await tasks_of(client, flow_id) == {"r": ("retrying", 1)}
    assert (await client.get(flow_id)).status == "paused"

    await client.resume(flow_id)
    events = await ended(client, flow_id)
    assert types(events)[-1] == "flow_succeeded"
    second = next(e for e in events if event_type(e) == "task_dispatched" and e.attempt == 2)  # type: ignore[union-attr]
    assert types(events).index("flow_resumed") < events.index(second)
    assert second.at >= failed.retry_at  # type: ignore[union-attr]


async def test_retry_of_a_failed_task_in_a_failed_flow_makes_it_succeed(
    client: Client, tmp_path: Path
) -> None:
    fixed, status = tmp_path / "fixed", tmp_path / "status"
    spec = {
        "name": "etl",
        "defaults": {"retry": ONCE},
        "tasks": [
            task("extract"),
            shell("load", f'test -e "{fixed}" || exit 3', depends=["extract"], retry=ONCE),
            task("publish", depends=["load"]),
            task("cleanup", depends=["load"], trigger="all_done"),
        ],
        "on_exit": writes_status(status),
    }
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_failed"
    assert status.read_text() == "failed\n"

    fixed.touch()
    stepped = await client.retry(flow_id, "load")
    assert stepped.status == "running"
    assert stepped.tasks == ["load", "publish", "notify"]
    events = await ended(client, flow_id, stepped.seq)
    assert types(events)[-1] == "flow_succeeded"
    assert status.read_text() == "failed\nsucceeded\n", "on_exit ran again, last"
    assert await tasks_of(client, flow_id) == all_succeeded(
        {"extract": 1, "load": 2, "publish": 1, "cleanup": 1, "notify": 2}
    )
    view = await client.get(flow_id)
    assert view.finished_at is not None and view.status == "succeeded"
    load = next(t for t in view.tasks if t.name == "load")
    assert [f.attempt for f in load.failures] == [1], "the failed attempt stays in its history"


async def test_weir_retry_wait_exits_1_naming_the_task_that_failed_again(client: Client) -> None:
    spec = {"name": "stubborn", "tasks": [task("load", "sh", "-c", "echo no disk >&2; exit 3")]}
    flow_id, events = await finish(client, {**spec, "defaults": {"retry": ONCE}})
    assert types(events)[-1] == "flow_failed"
    url = client.nc.connected_url
    assert url is not None
    ran = await weir(f"nats://{url.hostname}:{url.port}", "retry", flow_id, "load", "--wait")
    assert ran.code == 1, ran.stderr
    assert ran.stdout.decode().splitlines() == [
        f"{flow_id} running: planned again: load",
        f"{flow_id} flow_failed",
    ]
    said = 'task "load" attempt 2 (exit_code): task "load" exited with code 3; stderr ends: no disk'
    assert said in ran.stderr
    assert types(await ended(client, flow_id))[-1] == "flow_failed"
    assert (await tasks_of(client, flow_id))["load"] == ("failed", 2)


async def test_retry_downstream_runs_every_task_after_it_again(client: Client) -> None:
    spec = {
        "name": "chain",
        "tasks": [task("a"), task("b", depends=["a"]), task("c", depends=["b"]), task("d")],
    }
    flow_id, _ = await finish(client, spec)
    stepped = await client.retry(flow_id, "b", downstream=True)
    assert stepped.tasks == ["b", "c"]
    assert types(await ended(client, flow_id, stepped.seq))[-1] == "flow_succeeded"
    assert await tasks_of(client, flow_id) == all_succeeded({"a": 1, "b": 2, "c": 2, "d": 1})


async def test_retry_downstream_maps_again_over_the_list_its_task_writes_anew(
    client: Client, tmp_path: Path
) -> None:
    """A flow whose first task writes a list, mapped over, then gathered: after it ended, a
    retry of the list's task with downstream makes the mapped task read the new list and run
    new instances over its items (their attempts counting on from the old ones'), and the
    task after it gets their outputs; the old instances' history stays in the log."""
    source, got, runs = tmp_path / "list.json", tmp_path / "got.json", tmp_path / "runs"
    source.write_text('["a", "b", "c"]')
    script = (
        f'echo "{{{{ item }}}}" >> {runs}; printf \'"%s!"\' "{{{{ item }}}}" > out.json; '
        'echo "done {{ item }}"'
    )
    lister = task(
        "list-files",
        "cp",
        str(source),
        "files.json",
        outputs=[{"name": "files", "path": "files.json"}],
    )
    spec = {"name": "remap", "tasks": [lister, {**mapped(script), "retry": ONCE}, collector(got)]}
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_succeeded", events[-1]
    assert json.loads(got.read_text()) == ["a!", "b!", "c!"]

    source.write_text('["x", "y"]')
    url = client.nc.connected_url
    assert url is not None
    nats_url = f"nats://{url.hostname}:{url.port}"
    ran = await weir(nats_url, "retry", flow_id, "list-files", "--downstream", "--wait", "--json")
    assert ran.code == 0, ran.stderr
    stepped, result = map(json.loads, ran.stdout.splitlines())
    assert (stepped["status"], stepped["tasks"]) == ("running", ["list-files", "process", "total"])
    assert result == {"flow_id": flow_id, "result": "flow_succeeded"}, "--wait: its next end"
    events = await ended(client, flow_id, stepped["seq"])
    assert types(events)[-1] == "flow_succeeded", events[-1]
    assert json.loads(got.read_text()) == ["x!", "y!"], "the task after it got the new list"
    assert sorted(runs.read_text().split()) == ["a", "b", "c", "x", "y"]
    expanded = [(e.count, e.items) for e in events if isinstance(e, TaskExpanded)]
    assert expanded == [(3, ["a", "b", "c"]), (2, ["x", "y"])]
    dispatched = [
        (e.task, e.attempt)
        for e in events
        if isinstance(e, TaskDispatched) and e.task.startswith("process[")
    ]
    assert sorted(dispatched) == [
        ("process[0]", 1),
        ("process[0]", 2),
        ("process[1]", 1),
        ("process[1]", 2),
        ("process[2]", 1),
    ]
    assert await tasks_of(client, flow_id) == all_succeeded(
        {"list-files": 2, "process": 0, "process[0]": 2, "process[1]": 2, "total": 2}
    ), "the old instances are gone from the flow's tasks"
    ran = await weir(nats_url, "events", flow_id)
    shown = [line.split(None, 3)[2:] for line in ran.stdout.decode().splitlines()]
    shown = [fields for fields in shown if len(fields) == 2]  # (time, seq, type, fields)
    assert [rest for kind, rest in shown if kind == "task_expanded"] == [
        "task=process  count=3  items=['a', 'b', 'c']",
        "task=process  count=2  items=['x', 'y']",
    ]
    assert [rest for kind, rest in shown if kind == "task_retried"] == [
        "task=list-files  tasks=['list-files', 'process', 'total']  downstream=True"
    ]
    # Each attempt keeps its log: the old instance's under attempt 1, the new one's under 2.
    for attempt, said in ((1, b"done a\n"), (2, b"done x\n")):
        logs = [chunk async for _, chunk in client.logs(flow_id, "process[0]", attempt=attempt)]
        assert b"".join(logs) == said


async def test_retry_downstream_is_refused_while_the_mapped_tasks_instances_run(
    client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    instance = mapped(gated(gate, "echo 1 > out.json"))
    spec = {"name": "busy-map", "tasks": [listing("[1]"), instance]}
    flow_id = await client.submit(spec)
    await reached(client, flow_id, "task_started", "process[0]")
    said = (
        'mapped task "process", which runs after a task the retry plans again, has not ended: '
        '1 of its instances ("process[0]") have not ended, and it would read its list again; '
        f"retry once it has ended, or cancel the flow and run it again with `weir rerun {flow_id}`"
    )
    assert await refused(client.retry(flow_id, "list-files", downstream=True)) == said
    gate.touch()
    assert types(await ended(client, flow_id))[-1] == "flow_succeeded"


async def test_update_before_the_start_changes_the_flow_and_is_refused_after(
    client: Client, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = scheduled(
        "later",
        shell("w", f'echo "{{{{ params.n }}}} $WEIR_PARAM_n" > "{out}"'),
        params={"n": {"type": "int", "default": 1}},
        tags=["old"],
    )
    flow_id = await submitted(client, spec)
    assert (await client.get(flow_id)).status == "scheduled"
    stepped = await client.update(
        flow_id, priority=5, params={"n": "7"}, tags=["nightly"], metadata={"team": "data"}
    )
    assert stepped.status == "scheduled"
    assert stepped.tasks == ["priority", "params", "tags", "metadata"]
    view = await client.get(flow_id)
    assert (view.tags, view.metadata, view.params) == (["nightly"], {"team": "data"}, {"n": 7})
    assert [t.priority for t in view.tasks] == [5]

    assert (await client.update(flow_id, start_now=True)).status == "pending"
    events = await ended(client, flow_id)
    assert types(events)[-1] == "flow_succeeded"
    assert out.read_text() == "7 7\n"
    updated = [e for e in events if event_type(e) == "flow_updated"]
    assert [e.changed for e in updated] == [  # type: ignore[union-attr]
        ["priority", "params", "tags", "metadata"],
        ["scheduled_at"],
    ]
    message = await refused(client.update(flow_id, priority=1))
    assert message == (
        f'flow "{flow_id}" has already ended (succeeded): only a flow that has not started '
        "can be updated"
    )


async def test_stepping_in_is_refused_with_the_reason(client: Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    flow_id = await client.submit({"name": "busy", "tasks": [shell("a", gated(gate))]})
    await reached(client, flow_id, "task_started")

    assert await refused(client.retry(flow_id, "a")) == (
        'task "a" is running: only a task that failed or succeeded can be retried; '
        "wait for it to end"
    )
    assert await refused(client.retry(flow_id, "nope")) == (
        f'flow "{flow_id}" has no task "nope" (its tasks: a)'
    )
    assert await refused(client.update(flow_id, priority=3)) == (
        f'flow "{flow_id}" has started (task "a" was handed to a runner): only a scheduled '
        "or pending flow can be updated; cancel it and submit it again instead"
    )
    assert (await client.resume(flow_id)).already, "resume of a running flow changes nothing"
    await refused(client.retry("no-such-flow", "a"), ErrorCode.NOT_FOUND)
    await refused(client.pause("no-such-flow"), ErrorCode.NOT_FOUND)

    await client.cancel(flow_id)
    await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert "was cancelled and stays so" in await refused(client.retry(flow_id, "a"))
    assert await refused(client.pause(flow_id)) == (
        f'flow "{flow_id}" has already ended (cancelled): only a flow that has not ended can '
        "be paused"
    )
    assert "there is nothing to resume" in await refused(client.resume(flow_id))


async def test_bad_updates_list_every_problem(client: Client) -> None:
    spec = scheduled(
        "later", task("w"), params={"n": {"type": "int"}, "env": "dev"}, arguments={"n": 1}
    )
    flow_id = await submitted(client, spec)
    with pytest.raises(WeirError) as caught:
        await client.update(flow_id, priority=5000, params={"n": "many", "colour": "red"})
    error = caught.value
    assert error.code == ErrorCode.INVALID_FLOW
    problems = " | ".join(d.message for d in error.details)
    paths = {d.path for d in error.details}
    assert {"$.priority", "$.arguments.n", "$.arguments.colour"} <= paths, problems
    assert 'unknown parameter "colour"' in problems and 'parameter "n" is int' in problems
    assert "nothing to update" in await refused(client.update(flow_id), ErrorCode.BAD_REQUEST)
    reply = await client.nc.request(
        "weir.api.retry", b'{"flow_id": "x", "task": 3, "colour": 1}', timeout=10
    )
    assert b'"bad_request"' in reply.data and b"weir.api.retry" in reply.data
    view = await client.get(flow_id)
    assert view.status == "scheduled", "a refused update changes nothing"


async def test_the_cli_steps_in_and_says_why_not(client: Client, tmp_path: Path) -> None:
    url = client.nc.connected_url
    assert url is not None
    nats_url = f"nats://{url.hostname}:{url.port}"
    flow_id = await submitted(client, scheduled("later", task("w")))

    ran = await weir(nats_url, "pause", flow_id)
    assert (ran.code, ran.stdout.decode()) == (0, f"{flow_id} paused\n")
    ran = await weir(nats_url, "update", flow_id, "--priority", "3", "--tag", "x", "--json")
    assert ran.code == 0 and b'"tasks":["priority","tags"]' in ran.stdout
    ran = await weir(nats_url, "resume", flow_id)
    assert (ran.code, ran.stdout.decode()) == (0, f"{flow_id} scheduled\n")
    ran = await weir(nats_url, "retry", flow_id, "w")
    assert ran.code == 1 and 'task "w" is pending' in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr
    ran = await weir(nats_url, "update", flow_id, "--at", "tomorrow", "-p", "x", "--metadata", "[")
    assert ran.code == 2 and ran.stderr.count("error:") == 3, ran.stderr


async def test_a_paused_flows_queued_task_waits_and_others_pass_it(one_slot: Client) -> None:
    """`gpu` has one slot and nobody serves it: a dispatched attempt holds the slot until
    its flow is cancelled."""
    client = one_slot
    holder = await client.submit({"name": "holder", "tasks": [task("h", queue="gpu")]})
    await reached(client, holder, "task_dispatched")
    older = await client.submit({"name": "older", "tasks": [task("o", queue="gpu")]})
    await reached(client, older, "task_queued")
    await client.pause(older)

    newer = await client.submit({"name": "newer", "tasks": [task("n", queue="gpu")]})
    await reached(client, newer, "task_queued")
    await client.cancel(holder)  # the slot is free: the newer flow's task gets it
    await reached(client, newer, "task_dispatched")
    assert await tasks_of(client, older) == {"o": ("queued", 0)}

    await client.resume(older)
    await client.cancel(newer)
    await reached(client, older, "task_dispatched")
    await client.cancel(older)


async def test_a_retry_after_a_fail_fast_cancel_runs_its_tasks(
    client: Client, tmp_path: Path
) -> None:
    """fail_fast cancelled the flow; a retry moments later is dispatched after that cancel
    and runs (the runner's memory of the cancel is for dispatches made before it)."""
    fixed, go = tmp_path / "fixed", tmp_path / "go"
    spec = {
        "name": "etl-fast-retry",
        "fail_fast": True,
        "tasks": [
            shell("slow", f'test -e "{fixed}" || sleep 300', retry=ONCE),
            shell("load", gated(go, f'test -e "{fixed}" || exit 3'), retry=ONCE),
            task("publish", depends=["load"]),
        ],
    }
    flow_id = await submitted(client, spec)
    await reached(client, flow_id, "task_started", "slow")
    go.touch()
    events = await ended(client, flow_id)
    assert "flow_cancel_requested" in types(events) and types(events)[-1] == "flow_failed"

    fixed.touch()
    stepped = await client.retry(flow_id, "load")
    assert stepped.status == "running"
    events = await ended(client, flow_id, stepped.seq)
    assert types(events)[-1] == "flow_succeeded", "\n".join(
        f"{event_type(e)} {getattr(e, 'task', '')} {getattr(e, 'message', '')}" for e in events
    )
    assert await tasks_of(client, flow_id) == all_succeeded({"slow": 2, "load": 2, "publish": 1})
