"""`weir`: submit flows, list and show them, follow their events."""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, TypeVar

import click
import msgspec
import typer
from rich.table import Column, Table
from rich.text import Text
from weir_proto.api import FlowSummary, FlowView, ScheduleRequest
from weir_proto.durations import parse_duration
from weir_proto.events import (
    FlowCancelled,
    FlowDeduplicated,
    FlowEvent,
    FlowFailed,
    FlowRejected,
    FlowSubmitted,
    event_type,
)
from weir_proto.spec import FlowSpec
from weir_proto.status import TaskStatus

from weir import telemetry, waterfall
from weir.cli_data import artifacts_app, nats_security, secret_app
from weir.client import Client, SubmitVerdict, WeirError
from weir.config import NATS_URL_DEFAULT, ConfigError, NatsSecurity
from weir.jetstream import redact_url
from weir.spec_file import SpecFileError, load_spec_text
from weir.telemetry import flow_timeline
from weir.terminal import (
    error,
    escape_controls,
    escape_text,
    fail,
    line,
    note,
    out,
    plain,
    say,
    status,
)
from weir.where import WhereError, parse_where

app = typer.Typer(
    help="weir: submit flows (DAGs of container tasks) and watch them run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_T = TypeVar("_T")

NatsUrl = Annotated[
    str, typer.Option("--nats-url", envvar="WEIR_NATS_URL", help="NATS server to talk to.")
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _secret_option(flag: str, env: str, help_: str) -> Any:
    return typer.Option(flag, envvar=env, help=help_, show_default=False)


@app.callback()
def _nats_security(
    ctx: typer.Context,
    user: Annotated[str, _secret_option("--nats-user", "WEIR_NATS_USER", "NATS user.")] = "",
    password: Annotated[
        str,
        _secret_option(
            "--nats-password",
            "WEIR_NATS_PASSWORD",
            "NATS password (on the command line other users see it: prefer the file).",
        ),
    ] = "",
    password_file: Annotated[
        str,
        _secret_option(
            "--nats-password-file", "WEIR_NATS_PASSWORD_FILE", "File holding the NATS password."
        ),
    ] = "",
    token: Annotated[
        str,
        _secret_option(
            "--nats-token",
            "WEIR_NATS_TOKEN",
            "NATS token (on the command line other users see it: prefer the file).",
        ),
    ] = "",
    token_file: Annotated[
        str,
        _secret_option("--nats-token-file", "WEIR_NATS_TOKEN_FILE", "File holding the NATS token."),
    ] = "",
    creds: Annotated[
        str, _secret_option("--nats-creds", "WEIR_NATS_CREDS", "NATS .creds file (JWT+NKey).")
    ] = "",
    nkey_seed: Annotated[
        str, _secret_option("--nats-nkey-seed", "WEIR_NATS_NKEY_SEED", "File with an NKey seed.")
    ] = "",
    tls_ca: Annotated[
        str, _secret_option("--nats-tls-ca", "WEIR_NATS_TLS_CA", "CA bundle for the server.")
    ] = "",
    tls_cert: Annotated[
        str, _secret_option("--nats-tls-cert", "WEIR_NATS_TLS_CERT", "Client certificate.")
    ] = "",
    tls_key: Annotated[
        str, _secret_option("--nats-tls-key", "WEIR_NATS_TLS_KEY", "Client certificate key.")
    ] = "",
) -> None:
    """NATS credentials and TLS (flags before the command, or WEIR_NATS_* variables); read by
    weir.jetstream.connect like in every other process. See docs/security.md."""
    for flag, name in (("--nats-password", "password"), ("--nats-token", "token")):
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":
            note(
                f"warning: {flag} is visible to every user of this machine (ps, /proc); "
                f"use {flag}-file or WEIR_NATS_{name.upper()}(_FILE) instead"
            )
    chosen = {
        "WEIR_NATS_USER": user,
        "WEIR_NATS_PASSWORD": password,
        "WEIR_NATS_PASSWORD_FILE": password_file,
        "WEIR_NATS_TOKEN": token,
        "WEIR_NATS_TOKEN_FILE": token_file,
        "WEIR_NATS_CREDS": creds,
        "WEIR_NATS_NKEY_SEED": nkey_seed,
        "WEIR_NATS_TLS_CA": tls_ca,
        "WEIR_NATS_TLS_CERT": tls_cert,
        "WEIR_NATS_TLS_KEY": tls_key,
    }
    try:
        security = NatsSecurity.from_env({**os.environ, **{k: v for k, v in chosen.items() if v}})
    except ConfigError as exc:
        fail(str(exc), 2)
    nats_security.set(security)


def _run(nats_url: str, body: Callable[[Client], Awaitable[_T]]) -> _T:
    security = nats_security.get()

    async def main() -> _T:
        try:
            client = await asyncio.wait_for(
                Client.connect(nats_url, quiet=True, security=security), 10
            )
        except Exception as exc:
            fail(f"cannot reach NATS at {redact_url(nats_url)}: {_reason(exc)}", 2)
        try:
            return await body(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except WeirError as exc:
        fail(f"({exc.code}) {exc.message}", 1, (d.message for d in exc.details))


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _print_json(value: object) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
    sys.stdout.flush()


def _time(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if value else "-"


def _event_line(event: FlowEvent) -> Text:
    fields = {
        k: v
        for k, v in msgspec.to_builtins(event).items()
        if k not in ("id", "flow_id", "seq", "at", "type", "spec")
    }
    if isinstance(event, FlowSubmitted):
        fields = {"name": event.spec.name, "tasks": len(event.spec.tasks)}
    detail = "  ".join(f"{k}={v}" for k, v in fields.items())
    return line(f"{_time(event.at)}  #{event.seq:<4} {event_type(event):<15} ", detail)


def _read_text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)
    except UnicodeDecodeError as exc:
        fail(f"{path} is not UTF-8 text ({exc.reason})", 2)


def _documents(path: str, text: str) -> list[tuple[str, str]]:
    """(source, text) of each spec in a file: stdin whose every non-empty line is a JSON
    object is a JSON-lines stream (one spec a line); anything else is one YAML/JSON spec."""
    source = "stdin" if path == "-" else path
    if path != "-":
        return [(source, text)]
    lines = [(n, raw) for n, raw in enumerate(text.splitlines(), 1) if raw.strip()]
    if len(lines) < 2 or not all(raw.lstrip().startswith("{") for _, raw in lines):
        return [(source, text)]
    return [(f"stdin line {n}", raw) for n, raw in lines]


def _load_specs(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Every spec in the files (stdin may be JSON lines), checked; every problem of every
    file printed, exit 2 if any."""
    documents = [doc for path in paths for doc in _documents(path, _read_text(path))]
    where = f"{len(paths)} files" if len(paths) > 1 else "stdin" if paths[0] == "-" else paths[0]
    return _checked(documents, where)


def _load_spec(path: str) -> dict[str, Any]:
    """The spec in the file (or stdin), checked; every problem printed, exit 2 if any."""
    return _checked([("stdin" if path == "-" else path, _read_text(path))], path)[0]


def _checked(documents: Sequence[tuple[str, str]], where: str) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    problems: list[str] = []
    for source, text in documents:
        try:
            specs.append(load_spec_text(text, source))
        except SpecFileError as exc:
            if len(documents) == 1:
                problems += exc.problems
            else:  # which file or line each problem is in
                problems += [p if p.startswith(source) else f"{source}: {p}" for p in exc.problems]
    if problems:
        # Plain lines, never wrapped: one problem per line, as a terminal or a log shows it.
        if len(problems) == 1:
            lines = [f"error: {problems[0]}"]
        else:
            lines = [f"error: {where}: {len(problems)} problems:"]
            lines += [f"  - {problem}" for problem in problems]
        sys.stderr.write("".join(escape_controls(text) + "\n" for text in lines))
        raise typer.Exit(2)
    return specs


def _param_values(given: list[str]) -> dict[str, str]:
    """`-p NAME=VALUE` options as a mapping; the scheduler reads each value as its type."""
    values: dict[str, str] = {}
    bad = [item for item in given if "=" not in item or not item.partition("=")[0]]
    if bad:
        lines = [f"error: -p {escape_controls(item)}: expected NAME=VALUE" for item in bad]
        sys.stderr.write("".join(line + "\n" for line in lines))
        raise typer.Exit(2)
    for item in given:
        name, _, value = item.partition("=")
        values[name] = value
    return values


@app.command()
def submit(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Flow spec, YAML or JSON ('-' for stdin); several files, or JSON lines on "
            "stdin (one spec a line), are queued together.",
            metavar="FILE...",
        ),
    ],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the flow ends.")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Print events until it ends.")] = False,
    flow_id: Annotated[str | None, typer.Option("--id", help="Choose the flow id.")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A value for one of the flow's params, NAME=VALUE (repeat for several).",
        ),
    ] = None,
    queue: Annotated[
        bool,
        typer.Option(
            "--queue",
            help="Only queue it in the durable submit stream (works while no scheduler runs); "
            "prints the id without the scheduler's verdict.",
        ),
    ] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Submit a flow and print the scheduler's verdict: the id when accepted; every problem
    when rejected; the flow holding its unique key when a duplicate. Exits 0 only if
    accepted, and with --wait or --follow only if the flow then succeeded.

    Several specs (files, or JSON lines on stdin) are queued together in one batch, as with
    --queue: their ids are printed one a line, in order, once JetStream holds them all."""
    specs = _load_specs(files)
    if len(specs) > 1:
        _submit_batch(specs, files, wait or follow, flow_id, nats_url, as_json)
        return
    doc = specs[0]
    if flow_id:
        doc["id"] = flow_id
    params = _param_values(param or [])

    async def body(client: Client) -> int:
        if queue:
            new_id = await client.submit(doc, params=params)
        else:
            verdict = await client.submit(doc, params=params, verdict=True)
            if not verdict.accepted:
                _print_json(verdict) if as_json else _refused(verdict)
                return 1
            new_id = verdict.flow_id
        if not (wait or follow):
            if as_json:
                _print_json({"flow_id": new_id, "verdict": "queued" if queue else "accepted"})
            else:
                say(new_id)
            return 0
        if not as_json:
            note("submitted ", plain(new_id, "bold"))
        final: FlowEvent | None = None
        async for event in client.events(new_id, follow=True):
            final = event
            if follow:
                _print_json(event) if as_json else say(_event_line(event))
        kind = event_type(final) if final else "unknown"
        if wait and not follow:
            if as_json:
                _print_json({"flow_id": new_id, "result": kind})
            else:
                say(f"{new_id} {kind}")
        if not as_json:
            await _explain_end(client, new_id, final)
        return 0 if kind == "flow_succeeded" else 1

    raise typer.Exit(_run(nats_url, body))


def _submit_batch(
    specs: list[dict[str, Any]],
    files: Sequence[str],
    waits: bool,
    flow_id: str | None,
    nats_url: str,
    as_json: bool,
) -> None:
    """Queue several flows in one batch (`Client.submit_many`) and print their ids."""
    misuse = [
        f"{option} takes one flow, and {len(specs):,} were given ({', '.join(files)})"
        for option, given in (("--id", flow_id), ("--wait/--follow", waits))
        if given
    ]
    if misuse:
        fail("options that need one flow:", 2, misuse)

    async def body(client: Client) -> int:
        for new_id in await client.submit_many(specs):
            if as_json:
                _print_json({"flow_id": new_id, "verdict": "queued"})
            else:
                say(new_id)
        return 0

    raise typer.Exit(_run(nats_url, body))


def _refused(verdict: SubmitVerdict) -> None:
    if verdict.verdict == "duplicate":
        error(
            f"not run: {verdict.message}; this submit is recorded as a duplicate of it "
            f"(follow it with `weir events {verdict.flow_id} --follow`)"
        )
        return
    error(
        f"flow rejected (recorded as {verdict.flow_id}):",
        (problem.message for problem in verdict.errors),
    )


async def _explain_end(client: Client, flow_id: str, final: FlowEvent | None) -> None:
    """Why a flow that did not succeed ended as it did, on stderr."""
    match final:
        case FlowRejected(errors=errors):
            error(f"flow {flow_id} rejected:", (e.message for e in errors))
        case FlowFailed():
            view = await client.get(flow_id)
            failed = [t for t in view.tasks if t.status == TaskStatus.FAILED]
            error(
                f"flow {flow_id} failed:",
                (
                    f'task "{t.name}" attempt {t.attempt} ({t.error_type or "failed"}): '
                    f"{(t.error_message or '').strip()[:500] or 'no message'}"
                    for t in failed
                ),
            )
        case FlowCancelled(reason=reason):
            error(f"flow {flow_id} cancelled: {reason}")
        case FlowDeduplicated(existing=existing):
            error(f"flow {flow_id} not run: flow {existing} holds its unique key")
        case _:
            pass


@app.command()
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

    rows = _run(nats_url, body)
    _print_json(rows) if as_json else out.print(flow_table(rows))


def flow_table(rows: Iterable[FlowSummary]) -> Table:
    """`weir flows`: one row per flow."""
    # Ids are never cut: people copy them into the next command.
    table = Table(
        Column("ID", no_wrap=True, min_width=26), "NAME", "STATUS", "TASKS", "CREATED", "UPDATED"
    )
    for flow in rows:
        table.add_row(
            plain(flow.id),
            plain(flow.name),
            status(flow.status),
            str(flow.task_count),
            flow.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            flow.updated_at.strftime("%H:%M:%S"),
        )
    return table


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
    for part in flow_details(view):
        out.print(part, highlight=False, soft_wrap=not isinstance(part, Table))


def flow_details(view: FlowView) -> list[Text | Table]:
    """`weir show`: the flow's header, its problems, its tasks and their failures."""
    parts: list[Text | Table] = [
        line(plain(view.name, "bold"), "  ", view.id, "  ", status(view.status)),
        line(f"created {view.created_at:%Y-%m-%d %H:%M:%S}  updated {view.updated_at:%H:%M:%S}"),
    ]
    if view.tags:
        parts.append(line("tags: ", ", ".join(view.tags)))
    if view.rerun_of:
        parts.append(line("rerun of ", view.rerun_of))
    parts.extend(line("  - ", error.message) for error in view.errors)
    if not view.tasks:
        return parts
    table = Table("TASK", "STATUS", "ATTEMPT", "STARTED", "DURATION", "EXIT", "DETAIL")
    for task in view.tasks:
        duration = "-"
        if task.started_at and task.finished_at:
            duration = f"{(task.finished_at - task.started_at).total_seconds():.3f}s"
        table.add_row(
            plain(task.name),
            status(task.status),
            str(task.attempt),
            _time(task.started_at),
            duration,
            "-" if task.exit_code is None else str(task.exit_code),
            plain((task.error_message or "")[:200]),
        )
    parts.append(table)
    for task in view.tasks:
        for failure in task.failures:
            parts.append(
                line(
                    f"  {task.name} attempt {failure.attempt} {failure.error_type} "
                    f"at {_time(failure.at)}: ",
                    failure.message[:300],
                )
            )
        if task.retry_at and task.status == TaskStatus.RETRYING:
            parts.append(line(f"  {task.name} next attempt at {_time(task.retry_at)}"))
        if task.status == TaskStatus.SKIPPED and task.error_message:
            # In full, on a line of its own: the reason a trigger rule or condition gave.
            parts.append(line(f"  {task.name} skipped: ", task.error_message[:500]))
    return parts


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
            _print_json(event) if as_json else say(_event_line(event))
        return count

    if _run(nats_url, body) == 0 and not as_json:
        note(f"no events for flow {flow_id!r} (yet)")


@app.command()
def cancel(
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    reason: Annotated[
        str, typer.Option(help="Recorded in the flow's events.")
    ] = "cancelled by request",
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Cancel a flow: pending tasks never start, running attempts are killed."""
    state = _run(nats_url, lambda client: client.cancel(flow_id, reason))
    if as_json:
        _print_json(state)
    elif state.already:
        say(f"{state.flow_id} {state.status} (already {state.status}: nothing to do)")
    else:
        say(f"{state.flow_id} {state.status}")


@app.command()
def rerun(
    flow_id: Annotated[str, typer.Argument(help="An ended flow.")],
    failed_only: Annotated[
        bool, typer.Option("--failed-only", help="Reuse succeeded tasks and their outputs.")
    ] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Run an ended flow again, as a new flow; prints the new flow's id."""
    accepted = _run(nats_url, lambda client: client.rerun(flow_id, failed_only))
    _print_json(accepted) if as_json else say(accepted.flow_id)


@app.command()
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
    pruned = _run(nats_url, lambda client: client.prune(seconds, status or (), keep_last))
    _print_json({"pruned": pruned}) if as_json else say(f"pruned {pruned} flows")


app.add_typer(artifacts_app, name="artifacts")
app.add_typer(secret_app, name="secret")

schedule_app = typer.Typer(help="Cron schedules: run a flow at every tick.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("create")
def schedule_create(
    name: Annotated[str, typer.Argument(help="Schedule name (DNS-1123 label, <= 40 chars).")],
    file: Annotated[str, typer.Argument(help="Flow spec, YAML or JSON.")],
    cron: Annotated[str, typer.Option("--cron", help="Cron expression, e.g. '0 3 * * *'.")],
    timezone: Annotated[
        str, typer.Option("--tz", help="Time zone of the cron expression.")
    ] = "UTC",
    catch_up: Annotated[
        bool, typer.Option("--catch-up", help="Run every missed tick (default: only the last).")
    ] = False,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Create or replace a schedule."""
    flow = msgspec.convert(_load_spec(file), FlowSpec)
    request = ScheduleRequest(
        name=name,
        cron=cron,
        flow=flow,
        timezone=timezone,
        missed="catch_up" if catch_up else "skip",
        paused=paused,
    )
    view = _run(nats_url, lambda client: client.schedule(request))
    if as_json:
        _print_json(view)
    else:
        say(view.name, f": next run {view.next_run_at:%Y-%m-%d %H:%M:%S} UTC")


@schedule_app.command("list")
def schedule_list(nats_url: NatsUrl = NATS_URL_DEFAULT, as_json: Json = False) -> None:
    """List schedules."""
    rows = _run(nats_url, lambda client: client.schedules())
    if as_json:
        _print_json(rows)
        return
    table = Table("NAME", "CRON", "TZ", "FLOW", "STATE", "NEXT RUN (UTC)", "LAST TICK")
    for s in rows:
        table.add_row(
            plain(s.name),
            plain(s.cron),
            plain(s.timezone),
            plain(s.flow_name),
            "paused" if s.paused else "active",
            f"{s.next_run_at:%Y-%m-%d %H:%M:%S}",
            f"{s.last_tick_at:%Y-%m-%d %H:%M:%S}" if s.last_tick_at else "-",
        )
    out.print(table)


def _schedule_verb(verb: str) -> None:
    @schedule_app.command(verb, help=f"{verb.capitalize()} a schedule.")
    def command(
        name: Annotated[str, typer.Argument(help="Schedule name.")],
        nats_url: NatsUrl = NATS_URL_DEFAULT,
        as_json: Json = False,
    ) -> None:
        result = _run(nats_url, lambda client: client.schedule_action(verb, name))
        _print_json(result) if as_json else say(name, f": {verb}d")


for _verb in ("pause", "resume", "delete"):
    _schedule_verb(_verb)


@app.command()
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

    if _run(nats_url, body) == 0:
        note(f"no logs for task {task!r} of flow {flow_id!r} (yet)")


class LogOutput:
    """Where `weir logs` writes one stream: the bytes as they are to a file or pipe (or with
    --raw); to a terminal, the text with its control characters escaped. A UTF-8 character
    split between two chunks is decoded whole."""

    def __init__(self, target: BinaryIO, raw: bool) -> None:
        self.target = target
        self.escape = not raw and target.isatty()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")

    def write(self, chunk: bytes, final: bool = False) -> None:
        if self.escape:
            text = escape_controls(self.decoder.decode(chunk, final), keep="\n\t")
            chunk = text.encode("utf-8")
        if chunk:
            self.target.write(chunk)
            self.target.flush()


@app.command()
def trace(
    flow_id: Annotated[str, typer.Argument(help="Flow id.")],
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    as_json: Json = False,
) -> None:
    """Draw a flow as a waterfall from its event log (no tracing backend needed)."""

    async def body(client: Client) -> list[FlowEvent]:
        return [e async for e in client.events(flow_id)]

    history = _run(nats_url, body)
    if not history:
        fail(f"no events for flow {flow_id!r}")
    trace_id = telemetry.flow_trace_id_hex(flow_id)
    if as_json:
        _print_json({"flow": flow_timeline(history), "trace_id": trace_id})
        return
    drawing = waterfall.renderable(history, width=out.width, now=datetime.now(UTC))
    out.print(escape_text(drawing, keep="\n"))
    say(f"trace id (Grafana / Tempo): {trace_id}")


def main() -> None:
    """The `weir` command. An error nobody foresaw still ends as one line and exit status 1,
    never a traceback (WEIR_LOG_LEVEL=DEBUG logs the traceback too)."""
    try:
        result = app(standalone_mode=False)
    except click.exceptions.Abort:
        error("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    except Exception as exc:
        logging.getLogger("weir.cli").debug("unexpected error", exc_info=True)
        error(f"unexpected {type(exc).__name__}: {_reason(exc)}")
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
