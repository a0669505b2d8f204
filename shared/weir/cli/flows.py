"""`weir flows`, `show`, `events`, `cancel`, `rerun`, `prune`, `logs` and `trace`: ask
about flows the scheduler knows, and act on them."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from weir_proto.api import FlowSummary, FlowView
from weir_proto.durations import parse_duration
from weir_proto.events import FlowEvent

from weir import telemetry, waterfall
from weir.cli.entry import Json, NatsUrl, print_json, run
from weir.cli.output import LogOutput, event_line, flow_details, flow_table
from weir.client import Client
from weir.config import NATS_URL_DEFAULT
from weir.telemetry import flow_timeline
from weir.terminal import escape_text, fail, note, out, say
from weir.where import WhereError, parse_where


def flows(
    status: Annotated[str | None, typer.Option(help="Only flows with this status.")] = None,
    where: Annotated[
        str | None,
        typer.Option(
            help="Filter, e.g. 'status=failed and (tag=nightly or not name=etl)' "
            "(conditions: status, name, tag, anytag, meta.KEY, created>/<, finished>/<)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="How many (newest first).")] = 50,
    show_all: Annotated[bool, typer.Option("--all", help="Every flow, page after page.")] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """List flows, newest first."""
    condition: dict[str, Any] | None = None
    if where is not None:
        try:
            condition = parse_where(where)
        except WhereError as exc:
            fail(str(exc), 2)
        if status is not None:
            condition = {"and": [{"status": status}, condition]}

    async def body(client: Client) -> list[FlowSummary]:
        if condition is not None:
            rows: list[FlowSummary] = []
            cursor: str | None = None
            while True:
                page = await client.query(condition, min(limit, 1000), cursor)
                rows.extend(page.flows)
                if not show_all or page.next is None:
                    return rows
                cursor = page.next
        if show_all:
            return [f async for f in client.list_all(status)]
        return list((await client.list(status, limit)).flows)

    rows = run(nats_url, body)
    print_json(rows) if as_json else out.print(flow_table(rows))


def show(
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Show a flow and its tasks: status, attempts, durations, errors."""
    view: FlowView = run(nats_url, lambda client: client.get(flow_id))
    if as_json:
        print_json(view)
        return
    for part in flow_details(view):
        out.print(part, highlight=False, soft_wrap=not isinstance(part, Table))


def events(
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Go on live until it ends.")
    ] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Replay a flow's events from the first; with --follow, keep printing until it ends."""

    async def body(client: Client) -> int:
        count = 0
        async for event in client.events(flow_id, follow=follow):
            count += 1
            print_json(event) if as_json else say(event_line(event))
        return count

    if run(nats_url, body) == 0 and not as_json:
        note(f"no events for flow {flow_id!r} (yet)")


def cancel(
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    reason: Annotated[
        str, typer.Option(help="Recorded in the flow's events.")
    ] = "cancelled by request",
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Cancel a flow: pending tasks never start, running attempts are killed."""
    state = run(nats_url, lambda client: client.cancel(flow_id, reason))
    if as_json:
        print_json(state)
    elif state.already:
        say(f"{state.flow_id} {state.status} (already {state.status}: nothing to do)")
    else:
        say(f"{state.flow_id} {state.status}")


def rerun(
    flow_id: Annotated[str, typer.Argument(help="An ended flow.")],
    failed_only: Annotated[
        bool, typer.Option("--failed-only", help="Reuse succeeded tasks and their outputs.")
    ] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Run an ended flow again, as a new flow; prints the new flow's id."""
    accepted = run(nats_url, lambda client: client.rerun(flow_id, failed_only))
    print_json(accepted) if as_json else say(accepted.flow_id)


def prune(
    older_than: Annotated[
        str, typer.Option(help="Ended longer ago than this: 3600, 90m, 12h, 30d.")
    ] = "30d",
    status: Annotated[
        list[str] | None, typer.Option(help="Only ended flows with this status (repeatable).")
    ] = None,
    keep_last: Annotated[int, typer.Option(help="Keep the newest N matching flows.")] = 0,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Delete ended flows (their events, tasks and timers)."""
    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        fail(str(exc), 2)
    pruned = run(nats_url, lambda client: client.prune(seconds, status or (), keep_last))
    print_json({"pruned": pruned}) if as_json else say(f"pruned {pruned} flows")


def logs(
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    task: Annotated[str, typer.Argument(help="Task name.")],
    attempt: Annotated[int | None, typer.Option(help="Attempt number (default: latest).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Go on until it ends.")] = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Write the bytes exactly as the task wrote them, even to a terminal "
            "(a terminal otherwise shows control characters escaped).",
        ),
    ] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
) -> None:
    """Print a task attempt's stdout and stderr (kept after the pod or process is gone).
    Redirected to a file or a pipe, the bytes are exact; on a terminal, control characters
    other than newline and tab are shown escaped (`\\x1b`) unless --raw."""
    shown = {
        "stdout": LogOutput(sys.stdout.buffer, raw),
        "stderr": LogOutput(sys.stderr.buffer, raw),
    }

    async def body(client: Client) -> int:
        count = 0
        async for stream, chunk in client.logs(flow_id, task, attempt, follow):
            shown["stderr" if stream == "stderr" else "stdout"].write(chunk)
            count += 1
        for output in shown.values():
            output.write(b"", final=True)
        return count

    if run(nats_url, body) == 0:
        note(f"no logs for task {task!r} of flow {flow_id!r} (yet)")


def trace(
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Draw a flow as a waterfall from its event log (no tracing backend needed)."""

    async def body(client: Client) -> list[FlowEvent]:
        return [e async for e in client.events(flow_id)]

    history = run(nats_url, body)
    if not history:
        fail(f"no events for flow {flow_id!r}")
    trace_id = telemetry.flow_trace_id_hex(flow_id)
    if as_json:
        print_json({"flow": flow_timeline(history), "trace_id": trace_id})
        return
    drawing = waterfall.renderable(history, width=out.width, now=datetime.now(UTC))
    out.print(escape_text(drawing, keep="\n"))
    say(f"trace id (Grafana / Tempo): {trace_id}")
