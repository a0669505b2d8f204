"""`weir`: submit flows, list and show them, follow their events."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
import yaml
from rich.console import Console
from rich.table import Table
from weir_proto.api import FlowView
from weir_proto.events import FlowEvent, event_type

from weir.client import Client, WeirError
from weir.config import NATS_URL_DEFAULT

app = typer.Typer(
    help="weir: submit flows (DAGs of container tasks) and watch them run.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)
_T = TypeVar("_T")

NatsUrl = Annotated[
    str, typer.Option("--nats-url", envvar="WEIR_NATS_URL", help="NATS server to talk to.")
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "rejected": "red",
    "running": "cyan",
    "dispatched": "blue",
    "pending": "dim",
    "skipped": "yellow",
}


def _run(nats_url: str, body: Callable[[Client], Awaitable[_T]]) -> _T:
    async def main() -> _T:
        try:
            client = await asyncio.wait_for(Client.connect(nats_url), 10)
        except Exception as exc:
            err.print(f"[red]error:[/] cannot reach NATS at {nats_url}: {exc}")
            raise typer.Exit(2) from None
        try:
            return await body(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except WeirError as exc:
        err.print(f"[red]error ({exc.code}):[/] {exc.message}", markup=True, highlight=False)
        for detail in exc.details:
            err.print(f"  - {detail.message}", markup=False, highlight=False)
        raise typer.Exit(1) from None


def _print_json(value: object) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
    sys.stdout.flush()


def _time(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if value else "-"


def _event_line(event: FlowEvent) -> str:
    fields = {
        k: v
        for k, v in msgspec.to_builtins(event).items()
        if k not in ("id", "flow_id", "seq", "at", "type", "spec")
    }
    if event_type(event) == "flow_submitted":
        spec = event.spec  # type: ignore[union-attr]
        fields = {"name": spec.name, "tasks": len(spec.tasks)}
    detail = "  ".join(f"{k}={v}" for k, v in fields.items())
    return f"{_time(event.at)}  #{event.seq:<4} {event_type(event):<15} {detail}"


def _load_spec(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        err.print(f"[red]error:[/] cannot read {path}: {exc.strerror}")
        raise typer.Exit(2) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        err.print(f"[red]error:[/] {path} is not valid YAML/JSON: {exc}", markup=False)
        raise typer.Exit(2) from None
    if not isinstance(doc, dict):
        err.print(f"[red]error:[/] {path} must hold a mapping with name and tasks")
        raise typer.Exit(2)
    return doc


@app.command()
def submit(
    file: Annotated[str, typer.Argument(help="Flow spec, YAML or JSON ('-' for stdin).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the flow ends.")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Print events until it ends.")] = False,
    flow_id: Annotated[str | None, typer.Option("--id", help="Choose the flow id.")] = None,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Submit a flow. With --wait or --follow, exit 0 only if it succeeded."""
    doc = _load_spec(file)
    if flow_id:
        doc["id"] = flow_id

    async def body(client: Client) -> int:
        new_id = await client.submit(doc)
        if not (wait or follow):
            if as_json:
                _print_json({"flow_id": new_id})
            else:
                out.print(new_id)
            return 0
        if not as_json:
            err.print(f"submitted [bold]{new_id}[/]")
        final: FlowEvent | None = None
        async for event in client.events(new_id, follow=True):
            final = event
            if follow:
                _print_json(event) if as_json else out.print(_event_line(event), highlight=False)
        kind = event_type(final) if final else "unknown"
        if wait and not follow:
            if as_json:
                _print_json({"flow_id": new_id, "result": kind})
            else:
                out.print(f"{new_id} {kind}")
        if kind == "flow_rejected" and final is not None:
            for error in final.errors:  # type: ignore[union-attr]
                err.print(f"  - {error.message}", markup=False, highlight=False)
        return 0 if kind == "flow_succeeded" else 1

    raise typer.Exit(_run(nats_url, body))


@app.command()
def flows(
    status: Annotated[str | None, typer.Option(help="Only flows with this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many (newest first).")] = 50,
    show_all: Annotated[bool, typer.Option("--all", help="Every flow, page after page.")] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """List flows, newest first."""

    async def body(client: Client) -> list[Any]:
        if show_all:
            return [f async for f in client.list_all(status)]
        return (await client.list(status, limit)).flows

    rows = _run(nats_url, body)
    if as_json:
        _print_json(rows)
        return
    table = Table("ID", "NAME", "STATUS", "TASKS", "CREATED", "UPDATED")
    for flow in rows:
        style = _STATUS_STYLE.get(flow.status, "")
        table.add_row(
            flow.id,
            flow.name,
            f"[{style}]{flow.status}[/]" if style else flow.status,
            str(flow.task_count),
            flow.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            flow.updated_at.strftime("%H:%M:%S"),
        )
    out.print(table)


@app.command()
def show(
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Show a flow and its tasks: status, attempts, durations, errors."""
    view: FlowView = _run(nats_url, lambda client: client.get(flow_id))
    if as_json:
        _print_json(view)
        return
    style = _STATUS_STYLE.get(view.status, "")
    out.print(f"[bold]{view.name}[/]  {view.id}  [{style}]{view.status}[/]", highlight=False)
    out.print(f"created {view.created_at:%Y-%m-%d %H:%M:%S}  updated {view.updated_at:%H:%M:%S}")
    for error in view.errors:
        out.print(f"  - {error.message}", markup=False, highlight=False)
    if not view.tasks:
        return
    table = Table("TASK", "STATUS", "ATTEMPT", "STARTED", "DURATION", "EXIT", "DETAIL")
    for task in view.tasks:
        duration = "-"
        if task.started_at and task.finished_at:
            duration = f"{(task.finished_at - task.started_at).total_seconds():.3f}s"
        s = _STATUS_STYLE.get(task.status, "")
        table.add_row(
            task.name,
            f"[{s}]{task.status}[/]" if s else task.status,
            str(task.attempt),
            _time(task.started_at),
            duration,
            "-" if task.exit_code is None else str(task.exit_code),
            (task.error_message or "")[:200],
        )
    out.print(table)


@app.command()
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
            _print_json(event) if as_json else out.print(_event_line(event), highlight=False)
        return count

    if _run(nats_url, body) == 0 and not as_json:
        err.print(f"no events for flow {flow_id!r} (yet)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
