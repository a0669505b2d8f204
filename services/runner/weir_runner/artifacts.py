"""The runner's side of artifacts and secrets: a NATS connection for the data plane, and
the helper that task pods run to move artifacts.

`ArtifactStore` (shared with the CLI, in `weir.artifacts`) streams files in and out of the
Object Store, or `S3ArtifactStore` of S3-compatible storage (`WEIR_ARTIFACTS_URL`).
`DataPlane` gives executors a JetStream context: the worker's own one when it hands it over
with `attach`, else a connection opened for the first attempt that needs it and closed when
the last one is done, so an idle or stopped runner holds none.

As a program this module is the artifact helper of the Kubernetes executor's pods (the weir
image, `WEIR_KUBE_HELPER_IMAGE`):

    python -m weir_runner.artifacts download [--create PATH ...] FLOW/NAME=PATH ...
    python -m weir_runner.artifacts upload --flow FLOW NAME=PATH[=AS_DECLARED] ...

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
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from weir.artifacts import (
    ARTIFACTS_BUCKET_DEFAULT,
    ArtifactChecksumError,
    ArtifactError,
    ArtifactInfo,
    ArtifactNotFound,
    Artifacts,
    ArtifactStore,
    artifact_store,
    delete_flow_artifacts,
)
from weir.config import NatsSecurity, S3Storage
from weir.jetstream import close, connect
from weir.secrets import SecretStore, secret_key_from_env

__all__ = [
    "ArtifactChecksumError",
    "ArtifactError",
    "ArtifactInfo",
    "ArtifactNotFound",
    "ArtifactStore",
    "Artifacts",
    "DataPlane",
    "delete_flow_artifacts",
    "main",
]

TERMINATION_LOG = Path("/dev/termination-log")
HELPER_CONNECT_TIMEOUT = 30.0


class DataPlane:
    """JetStream for the executors' artifacts and secrets, shared by concurrent attempts."""

    def __init__(
        self,
        nats_url: str,
        bucket: str = ARTIFACTS_BUCKET_DEFAULT,
        name: str = "weir-runner",
        s3: S3Storage | None = None,
    ) -> None:
        """Artifacts go to the Object Store `bucket`, or to `s3` when given."""
        self.nats_url = nats_url
        self.bucket = bucket
        self.name = name
        self.s3 = s3
        self._attached: JetStreamContext | None = None
        self._nc: NATS | None = None
        self._users = 0
        self._lock = asyncio.Lock()

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
    found = path.stat()
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
        for item in args.items:
            source, path = _split(item, "FLOW/NAME")
            flow, _, name = source.partition("/")
            found = await store.download(flow, name, Path(path))
            # Writable by the task whatever its user: an input may also be an output
            # rewritten in place, and task containers drop every capability.
            Path(path).chmod(0o666)
            print(f"input {name} ({found.size} bytes) from flow {flow} -> {path}")
        return
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
        print(f"output {name} ({found.size} bytes) <- {declared or path}")


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
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
