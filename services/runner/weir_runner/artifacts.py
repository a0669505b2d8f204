"""The runner's side of artifacts and secrets: a NATS connection for the data plane, and
the helper that task pods run to move artifacts.

`ArtifactStore` (shared with the CLI, in `weir.artifacts`) streams files in and out of the
Object Store, or `S3ArtifactStore` of S3-compatible storage (`WEIR_ARTIFACTS_URL`).
`DataPlane` gives executors a JetStream context: the worker's own one when it hands it over
with `attach`, else a connection opened for the first attempt that needs it and closed when
the last one is done, so an idle or stopped runner holds none.

As a program this module is the artifact helper of the Kubernetes executor's pods (the weir
image, `WEIR_KUBE_HELPER_IMAGE`):

    python -m weir_runner.artifacts download [--create PATH ...]
        [--expect FLOW/NAME=SIZE:SHA256 ...] FLOW/NAME=PATH ...
    python -m weir_runner.artifacts upload --flow FLOW NAME=PATH[=AS_DECLARED] ...

`--expect` is the digest the event log recorded for an input when its task uploaded it: an
object that differs is refused with exit code `INTEGRITY_EXIT_CODE`, which the runner reports
as an `artifact_integrity` failure. An upload computes each output's size and SHA-256 from the
bytes it sends and writes them to the container's termination message, one JSON line
`[name, size, sha256]` per output (`digest_lines`), where the runner reads them
(`read_digest_lines`) for the attempt's report: the task, which has exited before the upload
container starts, cannot write that message, and nothing is read back from the store.

It connects to `WEIR_NATS_URL` with the credentials file in `WEIR_NATS_CREDS` (a NATS user
allowed only the artifacts bucket's subjects, see docs/data.md), or, when
`WEIR_ARTIFACTS_URL` is `s3://BUCKET/PREFIX`, to S3 only (`WEIR_S3_ENDPOINT_URL`,
`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`). A failure is printed and
written to the container's termination message, which the runner puts in the task's error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from weir.artifacts import (
    ARTIFACTS_BUCKET_DEFAULT,
    ArtifactChecksumError,
    ArtifactError,
    ArtifactInfo,
    ArtifactIntegrityError,
    ArtifactNotFound,
    Artifacts,
    ArtifactStore,
    artifact_store,
    delete_flow_artifacts,
)
from weir.config import NatsSecurity
from weir.jetstream import close, connect
from weir.s3_storage import S3Storage
from weir.secrets import SecretStore, secret_key_from_env
from weir_proto.messages import OutputDigest

__all__ = [
    "ArtifactChecksumError",
    "ArtifactError",
    "ArtifactInfo",
    "ArtifactIntegrityError",
    "ArtifactNotFound",
    "ArtifactStore",
    "Artifacts",
    "DataPlane",
    "delete_flow_artifacts",
    "main",
]

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_MESSAGE_MAX = 4096
"""Bytes of a container's termination message Kubernetes keeps: the digests of the outputs
beyond it (about 40 of them) are not reported, and those outputs are checked against the
store's own metadata only."""
HELPER_CONNECT_TIMEOUT = 30.0
INTEGRITY_EXIT_CODE = 3
"""The download helper's exit code when an input differs from the digest in the log."""


@dataclass(eq=False)
class DataPlane:
    """JetStream for the executors' artifacts and secrets, shared by concurrent attempts.
    Artifacts go to the Object Store `bucket`, or to `s3` when given."""

    nats_url: str = field(repr=False)  # may hold credentials
    bucket: str = ARTIFACTS_BUCKET_DEFAULT
    name: str = "weir-runner"
    s3: S3Storage | None = None
    _attached: JetStreamContext | None = field(default=None, init=False)
    _nc: NATS | None = field(default=None, init=False)
    _users: int = field(default=0, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def attach(self, js: JetStreamContext) -> None:
        """Use the worker's JetStream context instead of a connection of our own."""
        self._attached = js

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[JetStreamContext]:
        if self._attached is not None:
            yield self._attached
            return
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await connect(self.nats_url, f"{self.name}-data")
            nc = self._nc
            self._users += 1
        try:
            yield nc.jetstream()
        finally:
            async with self._lock:
                self._users -= 1
                if self._users == 0 and self._nc is nc:
                    self._nc = None
                    await close(nc)

    def artifacts(self, js: JetStreamContext) -> Artifacts:
        return artifact_store(js, self.bucket, self.s3)

    def secrets(self, js: JetStreamContext) -> SecretStore:
        # The key the runner read at start (a rotated key applies once it restarts).
        return SecretStore(js, secret_key_from_env())


def digest_lines(digests: Sequence[OutputDigest], limit: int = TERMINATION_MESSAGE_MAX) -> str:
    """One JSON line `[name, size, sha256]` per output, as many whole lines as fit in
    `limit` bytes."""
    text = ""
    for digest in digests:
        line = msgspec.json.encode([digest.name, digest.size, digest.sha256]).decode() + "\n"
        if len((text + line).encode()) > limit:
            break
        text += line
    return text


def read_digest_lines(text: str) -> tuple[OutputDigest, ...]:
    """The digests `digest_lines` wrote; a line cut short or not of that form is skipped."""
    found = []
    for line in text.splitlines():
        try:
            name, size, sha256 = msgspec.json.decode(line, type=tuple[str, int, str])
        except msgspec.DecodeError:
            continue
        found.append(OutputDigest(name=name, size=size, sha256=sha256))
    return tuple(found)


def _expectations(items: Sequence[str]) -> dict[str, OutputDigest]:
    """`FLOW/NAME=SIZE:SHA256` items by `FLOW/NAME`."""
    expected = {}
    for item in items:
        source, digest = _split(item, "FLOW/NAME")
        size, sep, sha256 = digest.partition(":")
        if not sep or not size.isdigit() or not sha256:
            raise SystemExit(f"weir artifacts helper: {item!r} is not FLOW/NAME=SIZE:SHA256")
        name = source.partition("/")[2]
        expected[source] = OutputDigest(name=name, size=int(size), sha256=sha256)
    return expected


def _split(item: str, what: str) -> tuple[str, str]:
    left, sep, path = item.partition("=")
    if not sep or not left or not path:
        raise SystemExit(f"weir artifacts helper: {item!r} is not {what}=PATH")
    return left, path


PLACEHOLDER_MTIME = 0
"""An output's file is created empty and dated 1970 before the task runs: still both when
the task is done, it was never written."""


def create_placeholder(path: Path) -> None:
    """The empty file a task's output is written into, writable by the task whatever its
    user (it is a file of the pod's volume, mounted at the output's path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    path.chmod(0o666)
    os.utime(path, (PLACEHOLDER_MTIME, PLACEHOLDER_MTIME))


def never_written(path: Path) -> bool:
    return untouched(path.stat())


def untouched(found: os.stat_result) -> bool:
    """Whether the file `found` describes is a placeholder no one has written."""
    return found.st_size == 0 and int(found.st_mtime) == PLACEHOLDER_MTIME


async def _helper(args: argparse.Namespace) -> None:
    if args.verb == "download":
        for placeholder in args.create:
            create_placeholder(Path(placeholder))
        if not args.items:
            return
    env = dict(os.environ)
    s3 = S3Storage.from_env(env)
    if s3 is not None:  # the pod needs no NATS at all
        await _move(args, artifact_store(None, s3=s3))
        return
    url = env.get("WEIR_NATS_URL", "nats://127.0.0.1:4222")
    creds = env.get("WEIR_NATS_CREDS")
    if creds and not Path(creds).is_file():
        del env["WEIR_NATS_CREDS"]  # the deployment's NATS needs none (the Secret has no `creds`)
    bucket = env.get("WEIR_ARTIFACTS_BUCKET") or ARTIFACTS_BUCKET_DEFAULT
    nc = await asyncio.wait_for(
        connect(url, "weir-artifacts-helper", 5, security=NatsSecurity.from_env(env)),
        HELPER_CONNECT_TIMEOUT,
    )
    try:
        await _move(args, artifact_store(nc.jetstream(), bucket))
    finally:
        await close(nc)


async def _move(args: argparse.Namespace, store: Artifacts) -> None:
    if args.verb == "download":
        expected = _expectations(args.expect)
        for item in args.items:
            source, path = _split(item, "FLOW/NAME")
            flow, _, name = source.partition("/")
            found = await store.download(flow, name, Path(path), expected.get(source))
            # Writable by the task whatever its user: an input may also be an output
            # rewritten in place, and task containers drop every capability.
            Path(path).chmod(0o666)
            print(f"input {name} ({found.size} bytes) from flow {flow} -> {path}")
        return
    digests: list[OutputDigest] = []
    for item in args.items:
        name, rest = _split(item, "NAME")
        path, _, declared = rest.partition("=")
        file = Path(path)
        shown = repr(declared or path)
        if not file.is_file():
            raise ArtifactError(f'output "{name}" expected a file at {shown}, but there is none')
        if never_written(file):
            raise ArtifactError(
                f'output "{name}" expected the task to write {shown}, but it never did'
            )
        found = await store.upload(args.flow, name, file)
        digests.append(OutputDigest(name=name, size=found.size, sha256=found.sha256))
        print(f"output {name} ({found.size} bytes, SHA-256 {found.sha256}) <- {declared or path}")
    with contextlib.suppress(OSError):
        TERMINATION_LOG.write_text(digest_lines(digests))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m weir_runner.artifacts", description="Move task artifacts in a pod."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    down = verbs.add_parser("download", help="place inputs before the task runs")
    down.add_argument(
        "--create",
        action="append",
        default=[],
        metavar="PATH",
        help="create the empty file an output will be written into",
    )
    down.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="FLOW/NAME=SIZE:SHA256",
        help="refuse the input unless it has this size and digest (the event log's)",
    )
    down.add_argument("items", nargs="*", metavar="FLOW/NAME=PATH")
    up = verbs.add_parser("upload", help="store outputs after the task succeeded")
    up.add_argument("--flow", required=True)
    up.add_argument("items", nargs="+", metavar="NAME=PATH[=AS_DECLARED]")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_helper(args))
    except Exception as exc:  # any failure: a message, an exit code, no traceback
        message = f"weir artifacts {args.verb}: {exc}"
        print(message, file=sys.stderr)
        with contextlib.suppress(OSError):
            TERMINATION_LOG.write_text(message)
        return INTEGRITY_EXIT_CODE if isinstance(exc, ArtifactIntegrityError) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
