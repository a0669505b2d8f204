"""Flow specs the tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from weir.client import Client
from weir_proto.api import FlowView, TaskView
from weir_proto.events import FlowEvent, event_type
from weir_proto.ids import attempt_id
from weir_proto.messages import Dispatch
from weir_proto.spec import TaskSpec

WAIT = 60.0
"""Seconds a test waits for a flow to end."""


def task(name: str, *cmd: str, depends: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "cmd": list(cmd) or ["true"], "depends": depends or [], **extra}


def shell(name: str, script: str, *args: str, **fields: Any) -> dict[str, Any]:
    """The task `name` that runs `script` with `sh -c` (`args` become its `$0`, `$1`, ...)."""
    return task(name, "sh", "-c", script, *args, **fields)


def flow_view(tasks: list[TaskView], at: datetime, **fields: Any) -> FlowView:
    """What `weir show` is given for a flow of `tasks` created at `at` (a failed flow
    named "n" unless `fields` say otherwise)."""
    fields = {"id": "f-1", "name": "n", "status": "failed", "seq": 1, **fields}
    return FlowView(created_at=at, updated_at=at, task_count=len(tasks), tasks=tasks, **fields)


def dispatch_of(
    task_fields: dict[str, Any],
    flow_id: str = "etl-7",
    attempt: int = 1,
    input_flows: dict[str, str] | None = None,
) -> Dispatch:
    """What the scheduler hands a runner for one attempt of the task `task_fields` spells."""
    task_spec = msgspec.convert(task_fields, TaskSpec)
    return Dispatch(
        flow_id=flow_id,
        attempt=attempt,
        attempt_id=attempt_id(flow_id, task_spec.name, attempt),
        task=task_spec,
        dispatched_at=datetime.now(UTC),
        token="attempt-token",
        input_flows=input_flows or {},
    )


def diamond(flow_id: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "diamond",
        "tasks": [
            task("join", "true", depends=["left", "right"]),
            task("left", "true", depends=["root"]),
            task("right", "true", depends=["root"]),
            task("root", "true"),
        ],
    }
    if flow_id:
        spec["id"] = flow_id
    return spec


def writes_status(status: Path, name: str = "notify") -> dict[str, Any]:
    """The task `name` (an `on_exit` task) that adds the flow's status as a line to the file
    `status`."""
    return shell(name, f'echo "$WEIR_FLOW_STATUS" >> "{status}"')


def scheduled(name: str, *tasks: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The flow `name` that starts in an hour, so it stays scheduled while a test looks at it:
    of `tasks` (else of one task "a" that succeeds), with `fields` as its other keys."""
    return {"name": name, "delay": "1h", **fields, "tasks": list(tasks) or [task("a", "true")]}


def waits_for(gate: Path) -> str:
    """A shell command that waits until the file `gate` exists."""
    return f'while [ ! -e "{gate}" ]; do sleep 0.05; done'


def random_blob(size: int) -> dict[str, Any]:
    """A flow whose one task "m" writes `size` random bytes as its output "blob"."""
    made = {"name": "blob", "path": "blob.bin"}
    return {
        "name": "make",
        "tasks": [shell("m", f"head -c {size} /dev/urandom > blob.bin", outputs=[made])],
    }


async def finish(client: Client, spec: dict[str, Any]) -> tuple[str, list[FlowEvent]]:
    """Submit, wait until the flow ends, return its id and its events."""
    flow_id = await client.submit(spec)
    return flow_id, await ended(client, flow_id)


async def ended(client: Client, flow_id: str, since: int = 0) -> list[FlowEvent]:
    """The flow's events once it has ended after its event `since` (waiting up to WAIT)."""
    await asyncio.wait_for(client.wait(flow_id, since), WAIT)
    return [e async for e in client.events(flow_id)]


async def task_views(client: Client, flow_id: str) -> dict[str, TaskView]:
    """The flow's tasks as `weir show` gives them, by name."""
    return {t.name: t for t in (await client.get(flow_id)).tasks}


async def tasks_of(client: Client, flow_id: str) -> dict[str, tuple[str, int]]:
    """Each task's status and attempt, by name."""
    return {t.name: (t.status, t.attempt) for t in (await client.get(flow_id)).tasks}


def all_succeeded(attempts: dict[str, int]) -> dict[str, tuple[str, int]]:
    """What `tasks_of` gives for a flow whose tasks all succeeded, each after the number of
    attempts `attempts` names (0 for a mapped task, which runs as its instances)."""
    return {name: ("succeeded", n) for name, n in attempts.items()}


def by_status(tasks: Mapping[str, Any]) -> dict[str, set[str]]:
    """The names of `tasks` (a flow's tasks by name, each with a `status`) grouped by status:
    which tasks ended how."""
    grouped: dict[str, set[str]] = {}
    for name, each in tasks.items():
        grouped.setdefault(str(each.status), set()).add(name)
    return grouped


async def lone_task(client: Client, flow_name: str, task_fields: dict[str, Any]) -> TaskView:
    """Run a flow of the one task `task_fields` spells to its end; that task as `weir show`
    gives it."""
    flow_id, _ = await finish(client, {"name": flow_name, "tasks": [task_fields]})
    (view,) = (await client.get(flow_id)).tasks
    return view


async def reached(client: Client, flow_id: str, kind: str, task: str | None = None) -> FlowEvent:
    """The flow's first event of type `kind` (of `task`, if given), waiting (up to WAIT) until
    it happens."""

    async def first() -> FlowEvent:
        async for event in client.events(flow_id, follow=True):
            if event_type(event) == kind and task in (None, getattr(event, "task", None)):
                return event
        raise AssertionError(f"flow {flow_id} ended without a {kind} event")

    return await asyncio.wait_for(first(), WAIT)


def types(events: list[FlowEvent]) -> list[str]:
    return [event_type(e) for e in events]
