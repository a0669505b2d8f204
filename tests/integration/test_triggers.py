"""Trigger rules, `when` conditions and on_exit on real Postgres + NATS: every decision is
an event in the log, and `weir show` (the flow's view) says why a task was skipped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from weir.client import Client
from weir_proto.events import event_type

from tests.flows import (
    WAIT,
    ended,
    finish,
    reached,
    shell,
    task,
    task_views,
    types,
    waits_for,
    writes_status,
)

ONCE = {"max_attempts": 1}


async def test_cleanup_runs_after_a_failure_yet_the_flow_fails(
    client: Client, tmp_path: Path
) -> None:
    cleaned = tmp_path / "cleaned"
    status = tmp_path / "status"
    spec = {
        "name": "etl",
        "tasks": [
            task("extract"),
            shell("load", "exit 3", depends=["extract"], retry=ONCE),
            task("publish", depends=["load"]),
            task("cleanup", "touch", str(cleaned), depends=["load"], trigger="all_done"),
        ],
        "on_exit": writes_status(status),
    }
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_failed"
    assert events[-1].failed_tasks == ["load"]  # type: ignore[union-attr]
    assert cleaned.exists(), "the cleanup task did not run after the failure"
    assert status.read_text() == "failed\n"
    dispatched = [e.task for e in events if event_type(e) == "task_dispatched"]  # type: ignore[union-attr]
    assert dispatched[-1] == "notify", "on_exit did not run last"
    view = await task_views(client, flow_id)
    assert view["publish"].status == "skipped"
    assert view["publish"].error_message == 'upstream task "load" failed'
    assert view["cleanup"].status == "succeeded" and view["notify"].status == "succeeded"


async def test_fail_fast_kills_the_sibling_cancels_cleanup_and_still_runs_on_exit_last(
    client: Client, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    cleaned = tmp_path / "cleaned"
    status = tmp_path / "status"
    # "load" fails only once the log holds "slow"'s start, so a sibling is running at the
    # failure (its process running is not enough: its start may not be reported yet).
    wait_then_fail = f"{waits_for(go)}; exit 3"
    spec = {
        "name": "etl-fast",
        "fail_fast": True,
        "tasks": [
            task("slow", "sleep", "300", retry=ONCE),
            shell("load", wait_then_fail, retry=ONCE),
            task("cleanup", "touch", str(cleaned), depends=["load"], trigger="all_done"),
        ],
        "on_exit": writes_status(status),
    }
    flow_id = await client.submit(spec)
    await reached(client, flow_id, "task_started", "slow")
    go.touch()
    events = await ended(client, flow_id)
    kinds = types(events)
    assert kinds[-1] == "flow_failed"
    assert events[-1].failed_tasks == ["load"]  # type: ignore[union-attr]
    request = events[kinds.index("flow_cancel_requested")]
    assert request.fail_fast  # type: ignore[union-attr]
    assert not cleaned.exists(), "the cleanup task ran although fail_fast cancelled it"
    assert status.read_text() == "failed\n"
    cancelled = {e.task: e.reason for e in events if event_type(e) == "task_cancelled"}  # type: ignore[union-attr]
    assert cancelled == {
        "slow": 'fail_fast: task "load" failed',
        "cleanup": 'fail_fast: task "load" failed',
    }
    handed = [i for i, e in enumerate(events) if getattr(e, "task", "") == "notify"]
    slow_ended = next(
        i
        for i, e in enumerate(events)
        if (event_type(e), getattr(e, "task", "")) == ("task_cancelled", "slow")
    )
    assert min(handed) > slow_ended, "on_exit was handed out before the killed sibling ended"
    view = await task_views(client, flow_id)
    assert {n: t.status for n, t in view.items()} == {
        "slow": "cancelled",
        "load": "failed",
        "cleanup": "cancelled",
        "notify": "succeeded",
    }


async def test_fail_fast_cancel_purges_a_waiting_sibling_but_not_the_on_exit_dispatch(
    client: Client, tmp_path: Path
) -> None:
    """The sibling waits on a queue nobody serves: the failure ends it at once, and the
    on_exit task is handed out in the same decision as the cancel request, whose purge of
    the flow's dispatches must leave the on_exit attempt for a runner."""
    status = tmp_path / "status"
    spec = {
        "name": "etl-fast-waiting",
        "fail_fast": True,
        "tasks": [
            task("unserved", queue="nobody-serves-this"),
            shell("load", "exit 3", retry=ONCE),
        ],
        "on_exit": writes_status(status),
    }
    flow_id, events = await finish(client, spec)
    kinds = types(events)
    assert kinds[-1] == "flow_failed"
    assert "flow_cancel_requested" in kinds
    assert status.read_text() == "failed\n"
    view = {t.name: t.status for t in (await client.get(flow_id)).tasks}
    assert view == {"unserved": "cancelled", "load": "failed", "notify": "succeeded"}


async def test_a_user_cancel_after_fail_fast_lets_the_running_on_exit_task_finish(
    client: Client, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    spec = {
        "name": "etl-fast-cancelled",
        "fail_fast": True,
        "tasks": [shell("load", "exit 3", retry=ONCE)],
        "on_exit": shell("notify", waits_for(go)),
    }
    flow_id = await client.submit(spec)
    await reached(client, flow_id, "task_started", "notify")
    await client.cancel(flow_id, "enough")
    await reached_kind(client, flow_id, "flow_cancel_requested", user=True)
    assert (await client.get(flow_id)).status == "cancelling"
    go.touch()  # the runner saw the cancel and did not kill it: it ends as it would have
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert event_type(final) == "flow_failed"  # "load" failed
    view = {t.name: t.status for t in (await client.get(flow_id)).tasks}
    assert view == {"load": "failed", "notify": "succeeded"}


async def test_a_user_cancel_kills_the_running_task_then_runs_on_exit_last_as_cancelled(
    client: Client, tmp_path: Path
) -> None:
    status = tmp_path / "status"
    spec = {
        "name": "etl-stopped",
        "tasks": [task("work", "sleep", "300"), task("publish", depends=["work"])],
        "on_exit": writes_status(status),
    }
    flow_id = await client.submit(spec)
    await reached(client, flow_id, "task_started", "work")
    await client.cancel(flow_id, "stop")
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert event_type(final) == "flow_cancelled"
    assert status.read_text() == "cancelled\n"
    events = [e async for e in client.events(flow_id)]
    ends = [(event_type(e), getattr(e, "task", "")) for e in events]
    assert ends.index(("task_cancelled", "work")) < ends.index(("task_dispatched", "notify"))
    view = {t.name: t.status for t in (await client.get(flow_id)).tasks}
    assert view == {"work": "cancelled", "publish": "cancelled", "notify": "succeeded"}


async def test_a_second_user_cancel_kills_the_running_on_exit_task(
    client: Client, tmp_path: Path
) -> None:
    spec = slow_exit("etl-terminated", task("work", "sleep", "300"))
    flow_id = await client.submit(spec)
    await reached(client, flow_id, "task_started", "work")
    await client.cancel(flow_id, "stop")
    await reached(client, flow_id, "task_started", "notify")
    await client.cancel(flow_id, "terminate")
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert event_type(final) == "flow_cancelled"
    view = await task_views(client, flow_id)
    assert view["work"].status == "cancelled"
    assert view["notify"].status == "cancelled" and view["notify"].error_message == "terminate"


def slow_exit(name: str, *tasks: dict[str, Any]) -> dict[str, Any]:
    """A flow of `tasks` whose on_exit task "notify" runs until it is killed."""
    return {"name": name, "tasks": list(tasks), "on_exit": task("notify", "sleep", "300")}


async def reached_kind(client: Client, flow_id: str, kind: str, user: bool = False) -> None:
    """Wait for an event of `kind` (with `user`, a cancel request that is not fail_fast's)."""

    async def follow() -> None:
        async for event in client.events(flow_id, follow=True):
            if event_type(event) == kind and not (user and getattr(event, "fail_fast", False)):
                return

    await asyncio.wait_for(follow(), WAIT)


async def test_a_false_condition_skips_with_its_reason_and_the_flow_succeeds(
    client: Client, tmp_path: Path
) -> None:
    deployed = tmp_path / "deployed"
    status = tmp_path / "status"
    spec = {
        "name": "release",
        "params": {"env": "dev"},
        "tasks": [
            shell("check", "exit 0"),
            task(
                "deploy",
                "touch",
                str(deployed),
                depends=["check"],
                when='params.env == "prod" and tasks.check.exit_code == 0',
            ),
            task("smoke", depends=["deploy"]),
            task("announce", depends=["deploy"], trigger="none_failed"),
        ],
        "on_exit": writes_status(status, "bye"),
    }
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_succeeded"
    assert not deployed.exists()
    assert status.read_text() == "succeeded\n"
    skipped = {e.task: e.reason for e in events if event_type(e) == "task_skipped"}  # type: ignore[union-attr]
    assert skipped == {
        "deploy": 'condition is false: params.env == "prod" and tasks.check.exit_code == 0',
        "smoke": 'trigger all_success: upstream task "deploy" was skipped',
    }
    view = await task_views(client, flow_id)
    assert view["deploy"].error_message == skipped["deploy"]
    assert view["announce"].status == "succeeded"

    _, events = await finish(client, spec | {"arguments": {"env": "prod"}})
    assert types(events)[-1] == "flow_succeeded" and deployed.exists()
    assert "task_skipped" not in types(events)


async def test_a_condition_that_does_not_parse_is_rejected_at_submit(client: Client) -> None:
    spec = {"name": "bad", "tasks": [task("a"), task("b", depends=["a"], when="tasks.a.status ==")]}
    verdict = await client.submit(spec, verdict=True)
    assert verdict.verdict == "rejected"
    assert [(e.path, e.message) for e in verdict.errors] == [
        ("$.tasks[1].when", 'flow "bad": task "b": when: ends too early')
    ]
