"""`weir submit`: read flow specs (files, stdin, JSON lines), check them, submit them, and
say what became of them."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from weir_proto.events import (
    FlowCancelled,
    FlowDeduplicated,
    FlowEvent,
    FlowFailed,
    FlowRejected,
    event_type,
)
from weir_proto.status import TaskStatus

from weir.cli.entry import Json, NatsUrl, print_json, run
from weir.cli.output import event_line
from weir.client import Client, SubmitVerdict
from weir.config import NATS_URL_DEFAULT
from weir.spec_file import SpecFileError, load_spec_text
from weir.terminal import error, escape_controls, fail, note, plain, say


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


def load_specs(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Every spec in the files (stdin may be JSON lines), checked; every problem of every
    file printed, exit 2 if any."""
    documents = [doc for path in paths for doc in _documents(path, _read_text(path))]
    where = f"{len(paths)} files" if len(paths) > 1 else "stdin" if paths[0] == "-" else paths[0]
    return _checked(documents, where)


def load_spec(path: str) -> dict[str, Any]:
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


def param_values(given: list[str]) -> dict[str, str]:
    """`-p NAME=VALUE` options as a mapping; the scheduler reads each value as its type."""
    values, problems = parse_params(given)
    if problems:
        sys.stderr.write("".join(f"error: {problem}\n" for problem in problems))
        raise typer.Exit(2)
    return values


def parse_params(given: list[str]) -> tuple[dict[str, str], list[str]]:
    """`-p NAME=VALUE` options as a mapping, and a problem for each that is not one."""
    bad = [item for item in given if "=" not in item or not item.partition("=")[0]]
    problems = [f"-p {escape_controls(item)}: expected NAME=VALUE" for item in bad]
    values = dict(item.partition("=")[::2] for item in given if item not in bad)
    return values, problems


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
    specs = load_specs(files)
    if len(specs) > 1:
        _submit_batch(specs, files, wait or follow, flow_id, nats_url, as_json)
        return
    doc = specs[0]
    if flow_id:
        doc["id"] = flow_id
    params = param_values(param or [])

    async def body(client: Client) -> int:
        if queue:
            new_id = await client.submit(doc, params=params)
        else:
            verdict = await client.submit(doc, params=params, verdict=True)
            if not verdict.accepted:
                print_json(verdict) if as_json else _refused(verdict)
                return 1
            new_id = verdict.flow_id
        if not (wait or follow):
            if as_json:
                print_json({"flow_id": new_id, "verdict": "queued" if queue else "accepted"})
            else:
                say(new_id)
            return 0
        if not as_json:
            note("submitted ", plain(new_id, "bold"))
        return await until_the_end(client, new_id, follow, as_json)

    raise typer.Exit(run(nats_url, body))


async def until_the_end(
    client: Client, flow_id: str, follow: bool, as_json: bool, since: int = 0
) -> int:
    """Follow the flow to its end after event `since` (printing each event with `follow`,
    else the end alone) and say why it did not succeed; the command's exit status."""
    final: FlowEvent | None = None
    async for event in client.events(flow_id, follow=True, since=since):
        final = event
        if follow and event.seq > since:
            print_json(event) if as_json else say(event_line(event))
    kind = event_type(final) if final else "unknown"
    if not follow:
        if as_json:
            print_json({"flow_id": flow_id, "result": kind})
        else:
            say(f"{flow_id} {kind}")
    if not as_json:
        await _explain_end(client, flow_id, final)
    return 0 if kind == "flow_succeeded" else 1


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
                print_json({"flow_id": new_id, "verdict": "queued"})
            else:
                say(new_id)
        return 0

    raise typer.Exit(run(nats_url, body))


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
