"""`weir artifacts …`: the files a flow's tasks produced. The CLI reads them from the NATS
Object Store directly, not through the scheduler, or from S3 when they are kept there
(`WEIR_ARTIFACTS_URL=s3://…`), and checks them against the digests the event log recorded."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from weir_proto.errors import ErrorCode, WeirException
from weir_proto.messages import OutputDigest
from weir_proto.validation import is_output_name

from weir.artifacts import (
    ARTIFACTS_BUCKET_DEFAULT,
    ArtifactError,
    ArtifactInfo,
    Artifacts,
    artifact_store,
)
from weir.cli.entry import (
    Json,
    NatsUrl,
    connect_client,
    nats_security,
    print_json,
    reason,
    run_jetstream,
)
from weir.client import WeirError
from weir.config import NATS_URL_DEFAULT, ConfigError
from weir.jetstream import redact_url
from weir.s3_storage import S3Storage
from weir.terminal import fail, note, out, plain

artifacts_app = typer.Typer(
    help="Files tasks produced (outputs), kept in the NATS Object Store (or S3).",
    no_args_is_help=True,
)
_T = TypeVar("_T")

Bucket = Annotated[
    str,
    typer.Option(
        "--bucket", envvar="WEIR_ARTIFACTS_BUCKET", help="Object Store bucket of the artifacts."
    ),
]
ArtifactsUrl = Annotated[
    str,
    typer.Option(
        "--artifacts-url",
        envvar="WEIR_ARTIFACTS_URL",
        help="s3://BUCKET/PREFIX when artifacts are kept in S3-compatible storage "
        "(WEIR_S3_ENDPOINT_URL and the AWS_* variables come from the environment).",
    ),
]


def _run_artifacts(
    nats_url: str, bucket: str, artifacts_url: str, body: Callable[[Artifacts], Awaitable[_T]]
) -> _T:
    """`body` with the store the settings pick: S3 needs no NATS connection."""
    try:
        s3 = S3Storage.from_env({**os.environ, "WEIR_ARTIFACTS_URL": artifacts_url})
    except ConfigError as exc:
        fail(str(exc), 2)
    if s3 is None:
        return run_jetstream(nats_url, lambda js: body(artifact_store(js, bucket)))

    async def main() -> _T:
        return await body(artifact_store(None, s3=s3))

    try:
        return asyncio.run(main())
    except ArtifactError as exc:
        fail(str(exc))


def _flow_exists(nats_url: str, flow_id: str) -> bool:
    """Whether the scheduler knows `flow_id` (True when it cannot be asked: then an empty
    listing is all there is to say)."""

    security = nats_security.get()

    async def ask() -> bool:
        try:
            client = await connect_client(nats_url, security)
        except Exception:
            return True
        try:
            return await client.get_or_none(flow_id) is not None
        except WeirError:
            return True
        finally:
            await client.close()

    return asyncio.run(ask())


class _NoLog(WeirException):
    """The event log could not be asked for a flow's digests; the message says why."""


def _recorded_digests(nats_url: str, flow_id: str) -> dict[str, OutputDigest]:
    """The digests the event log recorded for the flow's outputs, asked of the scheduler.
    A flow it does not know ends the command; no answer raises `_NoLog`."""

    security = nats_security.get()

    async def ask() -> dict[str, OutputDigest]:
        try:
            client = await connect_client(nats_url, security)
        except Exception as exc:
            raise _NoLog(f"cannot reach NATS at {redact_url(nats_url)}: {reason(exc)}") from None
        try:
            return await client.output_digests(flow_id)
        except WeirError as exc:
            if exc.code == ErrorCode.NOT_FOUND:
                fail(
                    f'flow "{flow_id}" does not exist (see `weir flows`): artifacts are only '
                    "fetched for flows whose event log records them"
                )
            raise _NoLog(f"{exc.message} (is the scheduler running?)") from None
        finally:
            await client.close()

    return asyncio.run(ask())


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@artifacts_app.command("ls")
def artifacts_ls(
    flow: Annotated[str, typer.Argument(help="Flow id.")],
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    bucket: Bucket = ARTIFACTS_BUCKET_DEFAULT,
    artifacts_url: ArtifactsUrl = "",
    as_json: Json = False,
) -> None:
    """List the artifacts (outputs) a flow produced."""
    found = _run_artifacts(nats_url, bucket, artifacts_url, lambda store: store.list(flow))
    if not found and not _flow_exists(nats_url, flow):
        fail(f'flow "{flow}" does not exist (see `weir flows`)')
    recorded: dict[str, OutputDigest] | None = {}
    if found:
        try:
            recorded = _recorded_digests(nats_url, flow)
        except _NoLog as exc:
            note(f"the digests recorded in the event log are not shown: {exc}")
            recorded = None
    if as_json:
        rows = [
            {
                "name": a.name,
                "size": a.size,
                "sha256": a.sha256,
                "modified": a.modified,
                "recorded": recorded.get(a.name) if recorded is not None else None,
                "matches_log": _matches_log(a, recorded),
            }
            for a in found
        ]
        print_json(rows)
        return
    if not found:
        note(f"flow {flow} has no artifacts")
        return
    table = Table("name", "size", "sha256", "modified", "log", box=None)
    for a in found:
        modified = a.modified.strftime("%Y-%m-%d %H:%M:%S") if a.modified else "-"
        matches = _matches_log(a, recorded)
        log = "-" if matches is None else "ok" if matches else "REPLACED"
        table.add_row(plain(a.name), _size(a.size), a.sha256[:16], modified, log)
    out.print(table)


def _matches_log(found: ArtifactInfo, recorded: dict[str, OutputDigest] | None) -> bool | None:
    """Whether the store describes the object the log recorded (None: nothing recorded, or
    the log could not be asked). The store's description may lie: `weir artifacts get`
    checks the bytes themselves."""
    digest = recorded.get(found.name) if recorded is not None else None
    if digest is None:
        return None
    return (found.size, found.sha256) == (digest.size, digest.sha256)


@artifacts_app.command("get")
def artifacts_get(
    flow: Annotated[str, typer.Argument(help="Flow id.")],
    name: Annotated[str, typer.Argument(help="Output name.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="File or directory to write to (default: NAME, in the current directory).",
        ),
    ] = None,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
    bucket: Bucket = ARTIFACTS_BUCKET_DEFAULT,
    artifacts_url: ArtifactsUrl = "",
) -> None:
    """Download an artifact, checking its size and SHA-256 against the digest the event
    log recorded when its task uploaded it; `-o -` writes it to stdout. The file appears
    whole or not at all, and replaces (never writes through) a link at its path."""
    to_stdout = output is not None and str(output) == "-"
    target = output if output is not None and not to_stdout else Path(file_name_for(name))
    if target.is_dir():
        target = target / file_name_for(name)
    try:
        expected = _recorded_digests(nats_url, flow).get(name)
    except _NoLog as exc:
        fail(
            f'cannot check artifact "{name}" of flow {flow} against the digest its event log '
            f"recorded, so it is not fetched: {exc}; point --nats-url (WEIR_NATS_URL) at the "
            "deployment's NATS",
            2,
        )
    # A directory of our own beside the target: nothing another user planted there (a link
    # at the partial file's path) is written through, and the rename is atomic.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        landing = Path(
            tempfile.mkdtemp(prefix=".weir-get-", dir=None if to_stdout else target.parent)
        )
    except OSError as exc:
        fail(f"cannot write to {target.parent}: {exc.strerror}", 2)
    try:
        fetched = landing / "artifact"
        _run_artifacts(
            nats_url,
            bucket,
            artifacts_url,
            lambda store: store.download(flow, name, fetched, expected),
        )
        if expected is None:
            note(
                f'warning: the event log records no digest for output "{name}" of flow {flow} '
                "(stored before digests were recorded?): it was checked against the store's "
                "own digest only"
            )
        if to_stdout:
            with open(fetched, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        else:
            os.replace(fetched, target)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror}", 2)
    finally:
        shutil.rmtree(landing, ignore_errors=True)
    if not to_stdout:
        note(f"wrote {target}")


def file_name_for(name: str) -> str:
    """The file `weir artifacts get` writes an artifact to by default: its name when that is
    an output name (the planner refuses any other), else the name made one (each character
    that is not a letter, digit, '.', '_' or '-' becomes '_'), so that an artifact stored
    under a path (`../../.bashrc`) still lands in the current directory."""
    if is_output_name(name):
        return name
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:128]
    return safe if is_output_name(safe) else f"artifact{safe}"[:128]
