"""The whole path on real Postgres and NATS: submit -> log -> dispatch -> runner -> status."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from weir.client import Client, WeirError
from weir.config import Settings
from weir_proto import subjects
from weir_proto.errors import ErrorCode
from weir_proto.events import event_type
from weir_proto.messages import AttemptFinished
from weir_runner import sandbox
from weir_runner.worker import Runner
from weir_scheduler.service import Scheduler

from tests.conftest import Services, _start
from tests.flows import diamond, finish, lone_task, shell, task, types
from tests.inspection import inspecting
from tests.waiting import eventually, outbox_drained, until

ONCE = {"max_attempts": 1}


async def test_diamond_runs_each_task_after_its_own_dependencies(client: Client) -> None:
    flow_id, events = await finish(client, diamond())

    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert types(events)[0] == "flow_submitted"
    assert types(events)[-1] == "flow_succeeded"
    position = {(event_type(e), getattr(e, "task", None)): i for i, e in enumerate(events)}
    for child, parents in {"left": ["root"], "right": ["root"], "join": ["left", "right"]}.items():
        for parent in parents:
            assert position[("task_succeeded", parent)] < position[("task_dispatched", child)]
    view = await client.get(flow_id)
    assert view.status == "succeeded"
    assert [t.name for t in view.tasks] == ["join", "left", "right", "root"]
    assert {t.status for t in view.tasks} == {"succeeded"}
    assert all(t.attempt == 1 and t.exit_code == 0 for t in view.tasks)
    assert all(t.started_at and t.finished_at for t in view.tasks)


async def test_failed_task_fails_flow_skips_downstream_and_reports_why(client: Client) -> None:
    spec = {
        "name": "breaks",
        "tasks": [
            shell("extract", "echo 'disk on fire' >&2; exit 3", retry=ONCE),
            task("load", "true", depends=["extract"]),
            task("slow-sibling", "sleep", "0.3"),
        ],
    }
    flow_id, events = await finish(client, spec)

    assert types(events)[-1] == "flow_failed"
    assert events[-1].failed_tasks == ["extract"]  # type: ignore[union-attr]
    view = await client.get(flow_id)
    tasks = {t.name: t for t in view.tasks}
    assert view.status == "failed"
    assert tasks["extract"].status == "failed"
    assert tasks["extract"].exit_code == 3
    assert tasks["extract"].error_type == "exit_code"
    assert 'task "extract" exited with code 3' in (tasks["extract"].error_message or "")
    assert "disk on fire" in (tasks["extract"].error_message or "")
    assert tasks["load"].status == "skipped"
    assert 'upstream task "extract" failed' in (tasks["load"].error_message or "")
    assert tasks["slow-sibling"].status == "succeeded"  # running siblings finish


async def test_program_that_cannot_start_is_an_executor_error(client: Client) -> None:
    a = await lone_task(client, "typo", task("a", "no-such-program-x", retry=ONCE))
    assert a.status == "failed"
    assert a.error_type == "executor"
    assert "cannot start 'no-such-program-x'" in (a.error_message or "")


async def test_missing_output_file_fails_the_task_naming_the_path(client: Client) -> None:
    output = {"name": "report", "path": "report.csv"}
    a = await lone_task(client, "forgetful", task("a", "true", outputs=[output], retry=ONCE))
    assert a.status == "failed"
    assert "report.csv" in (a.error_message or "")


async def test_absolute_artifact_path_is_refused_without_a_sandbox(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "available", lambda: False)  # as on a machine without userns
    output = {"name": "x", "path": "/task-output.txt"}
    a = await lone_task(client, "abs", task("a", "true", outputs=[output], retry=ONCE))
    assert a.status == "failed"
    assert a.error_type == "executor"
    assert a.error_message == (
        "task \"a\": output path '/task-output.txt' is absolute; the local executor puts "
        "absolute paths only in a sandbox (its own user and mount namespaces), which this "
        "machine does not allow (`unshare --user --map-root-user --mount true` fails), and "
        "never writes outside the attempt's directory: use a relative path, or the "
        "kubernetes executor"
    )


async def test_raw_json_submit_from_any_nats_client(services: Services, client: Client) -> None:
    nc = await nats.connect(services.settings.nats_url)
    try:
        raw = b'{"name": "from-raw-nats", "tasks": [{"name": "a", "cmd": ["true"]}]}'
        ack = await nc.jetstream().publish("weir.cmd.submit", raw)
        assert ack.stream == subjects.STREAM_COMMANDS
    finally:
        await nc.close()

    page = await eventually(
        lambda: client.list(status="succeeded"),
        lambda page: any(flow.name == "from-raw-nats" for flow in page.flows),
        "the flow submitted over raw NATS succeeded",
    )
    (flow_id,) = [flow.id for flow in page.flows if flow.name == "from-raw-nats"]
    assert len(flow_id) == 26


async def test_event_stream_holds_exactly_the_event_log(client: Client, services: Services) -> None:
    flow_id, streamed = await finish(client, diamond())
    async with inspecting(services.settings.database_url) as db:
        rows = await db.event_log(flow_id)
    url = services.settings.database_url
    await until(lambda: outbox_drained(url), "the relay published every recorded event")
    assert [(r.id, r.seq, r.type) for r in rows] == [(e.id, e.seq, event_type(e)) for e in streamed]


async def test_resubmitting_a_flow_is_idempotent(client: Client, services: Services) -> None:
    flow_id, _ = await finish(client, diamond("same-flow"))
    again = await client.submit(diamond("same-flow"))
    assert again == flow_id
    nc = await nats.connect(services.settings.nats_url)
    try:
        reply = await nc.request(
            "weir.api.submit", msgspec.json.encode(diamond("same-flow")), timeout=10
        )
    finally:
        await nc.close()
    result = msgspec.json.decode(reply.data)["result"]
    assert result == {"flow_id": "same-flow", "status": "succeeded", "created": False}
    events = [e async for e in client.events(flow_id)]
    assert sum(1 for e in events if event_type(e) == "flow_submitted") == 1


async def test_different_spec_under_a_taken_id_is_rejected(client: Client) -> None:
    await finish(client, diamond("taken"))
    other = {"id": "taken", "name": "other", "tasks": [task("x", "true")]}
    with pytest.raises(WeirError) as raised:
        await _api_submit(client, other)
    assert raised.value.code == ErrorCode.INVALID_FLOW
    assert 'flow id "taken" is already used by another flow' in raised.value.message
    assert (await client.get("taken")).name == "diamond"


async def _api_submit(client: Client, spec: dict[str, Any]) -> dict[str, Any]:
    reply = await client.nc.request("weir.api.submit", msgspec.json.encode(spec), timeout=10)
    body = msgspec.json.decode(reply.data)
    if "error" in body:
        error = body["error"]
        raise WeirError(error["code"], error["message"])
    result: dict[str, Any] = body["result"]
    return result


async def test_list_pages_through_every_flow_newest_first(client: Client) -> None:
    ids = []
    for i in range(23):
        result = await _api_submit(
            client, {"id": f"page-{i:02d}", "name": "p", "tasks": [task("a", "true")]}
        )
        ids.append(result["flow_id"])
    seen = [f.id async for f in client.list_all(page=5)]
    assert seen == list(reversed(ids))
    first = await client.list(limit=5)
    assert len(first.flows) == 5 and first.next is not None


async def test_api_answers_bad_requests_with_structured_errors(client: Client) -> None:
    for subject, body, code, words in [
        ("weir.api.get", b'{"flow_id": "nope"}', ErrorCode.NOT_FOUND, 'flow "nope" does not exist'),
        ("weir.api.get", b"{not json", ErrorCode.BAD_REQUEST, "weir.api.get"),
        ("weir.api.get", b'{"flow_id": 7}', ErrorCode.BAD_REQUEST, "Expected str"),
        ("weir.api.list", b'{"limit": 0}', ErrorCode.BAD_REQUEST, "limit must be between 1 and"),
        ("weir.api.list", b'{"status": "nah"}', ErrorCode.BAD_REQUEST, "status must be one of"),
        ("weir.api.list", b'{"cursor": "zzz"}', ErrorCode.BAD_REQUEST, "cursor"),
        ("weir.api.list", b'{"colour": "red"}', ErrorCode.BAD_REQUEST, "unknown field"),
    ]:
        reply = await client.nc.request(subject, body, timeout=10)
        error = msgspec.json.decode(reply.data)["error"]
        assert error["code"] == code, (subject, body, error)
        assert words in error["message"], (subject, body, error)


async def test_duplicate_stale_and_garbage_status_reports_change_nothing(
    client: Client, services: Services
) -> None:
    flow_id, before = await finish(client, diamond())
    duplicate = AttemptFinished(
        flow_id=flow_id,
        task="root",
        attempt=1,
        runner="elsewhere",
        token="not-the-attempts",
        at=before[-1].at,
        exit_code=1,
        error_type=None,
    )
    js = client.js
    await js.publish(subjects.status(flow_id), msgspec.json.encode(duplicate))
    await js.publish(subjects.status(flow_id), b"\xff\xfe not json")
    await js.publish(subjects.status("no-such-flow"), msgspec.json.encode(duplicate))
    # The scheduler keeps serving: a new flow still runs to the end.
    _, events = await finish(client, diamond())
    assert types(events)[-1] == "flow_succeeded"
    after = [e async for e in client.events(flow_id)]
    assert after == before


async def test_noop_executor_succeeds_without_running_anything(
    settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "must-not-exist"
    noop = dataclasses.replace(settings, executor="noop")
    scheduler, runner = Scheduler(noop), Runner(noop)
    tasks = [await _start("scheduler", scheduler), await _start("runner", runner)]
    try:
        async with await Client.connect(noop.nats_url) as client:
            spec = {"name": "dry", "tasks": [task("a", "touch", str(marker))]}
            _, events = await finish(client, spec)
    finally:
        runner.stop.set()
        scheduler.stop.set()
        await asyncio.gather(*tasks)
    assert types(events)[-1] == "flow_succeeded"
    assert not marker.exists()
