"""`weir retry`, `pause`, `resume` and `update`: step in on a flow that exists."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from weir_proto.api import Stepped

from weir.cli.entry import Json, NatsUrl, print_json, run
from weir.cli.output import task_names
from weir.cli.submit import parse_params, until_the_end
from weir.client import Client
from weir.config import NATS_URL_DEFAULT
from weir.terminal import escape_controls, say

FlowId = Annotated[str, typer.Argument(help="Flow id.")]


def _said(stepped: Stepped, as_json: bool, what: str = "") -> None:
    if as_json:
        print_json(stepped)
    elif stepped.already:
        say(f"{stepped.flow_id} {stepped.status} (already {stepped.status}: nothing to do)")
    else:
        say(f"{stepped.flow_id} {stepped.status}" + (f": {what}" if what else ""))


def retry(
    flow_id: FlowId,
    task: Annotated[
        str,
        typer.Argument(
            help="A task of the flow that failed or succeeded: also an instance 'NAME\\[i]' of a "
            "mapped task (it runs again alone), or a mapped task (its instances that did not "
            "succeed run again)."
        ),
    ],
    downstream: Annotated[
        bool, typer.Option("--downstream", help="Run every task after it again too.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Then wait until the flow ends again; exit 1 unless it succeeds."
        ),
    ] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Run one task of a flow again, inside the flow (also one that has ended): the tasks
    skipped or cancelled so far are planned again, and the flow runs until it ends again."""

    async def body(client: Client) -> int:
        stepped = await client.retry(flow_id, task, downstream)
        _said(stepped, as_json, "planned again: " + task_names(stepped.tasks))
        if not wait:
            return 0
        return await until_the_end(client, flow_id, False, as_json, since=stepped.seq)

    raise typer.Exit(run(nats_url, body))


def pause(
    flow_id: FlowId,
    reason: Annotated[str, typer.Option(help="Recorded in the flow's events.")] = (
        "paused by request"
    ),
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Hand out no new task of a flow until `weir resume`; running attempts finish."""
    _said(run(nats_url, lambda client: client.pause(flow_id, reason)), as_json)


def resume(flow_id: FlowId, nats_url: NatsUrl = NATS_URL_DEFAULT, as_json: Json = False) -> None:
    """Hand out a paused flow's work again (retries that fell due meanwhile first)."""
    _said(run(nats_url, lambda client: client.resume(flow_id)), as_json)


def update(
    flow_id: FlowId,
    priority: Annotated[
        int | None, typer.Option(help="The flow's priority: 0 is the highest.")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Start at this time (RFC 3339, e.g. 2026-12-01T06:00:00Z), or 'now'."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", help="NAME=VALUE: set a parameter (repeatable)."),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="The flow's tags (repeatable; replaces them).")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option(help="The flow's metadata, a JSON object (replaces it).")
    ] = None,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Change a flow that has not started (scheduled, or pending with nothing handed to a
    runner yet): priority, start time, params, tags, metadata."""
    params, problems = parse_params(param or [])
    scheduled_at, start_now = None, False
    if at is not None:
        scheduled_at, start_now, problem = _start(at)
        problems.extend([problem] if problem else [])
    meta: dict[str, Any] | None = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError as exc:
            problems.append(f"--metadata: not JSON ({exc})")
        if meta is not None and not isinstance(meta, dict):
            problems.append('--metadata: give a JSON object, e.g. \'{"team": "data"}\'')
    if problems:
        sys.stderr.write("".join(f"error: {escape_controls(p)}\n" for p in problems))
        raise typer.Exit(2)
    stepped = run(
        nats_url,
        lambda client: client.update(
            flow_id,
            priority=priority,
            scheduled_at=scheduled_at,
            start_now=start_now,
            params=params or None,
            tags=tag,
            metadata=meta,
        ),
    )
    _said(stepped, as_json, "changed " + ", ".join(stepped.tasks))


def _start(at: str) -> tuple[datetime | None, bool, str | None]:
    """`--at`: (the time, start now, the problem)."""
    if at.strip().lower() == "now":
        return None, True, None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return (
            None,
            False,
            f"--at {at!r}: expected an RFC 3339 time such as 2026-12-01T06:00:00Z, or 'now'",
        )
    if when.tzinfo is None:
        return None, False, f"--at {at!r}: give a time zone, e.g. {at}Z or {at}+01:00"
    return when, False, None
