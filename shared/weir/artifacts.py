"""Artifacts: the files tasks hand to each other, kept in a JetStream Object Store.

One bucket per deployment (`WEIR_ARTIFACTS_BUCKET`, default `weir-artifacts`); the output
`name` of flow `flow` is the object `<flow>/<name>`. The layout is the Object Store's own
(`$O.<bucket>.C.<nuid>` chunks, `$O.<bucket>.M.<name>` metadata), so `nats object ls|get`
reads the same bucket.

Transfers stream: an upload reads the file one chunk at a time (nats-py's `put` does,
given a file object), and a download pulls bounded batches of chunks from an ephemeral pull
consumer instead of nats-py's `get`, whose push consumer may queue the whole object in
memory when the disk is slower than the network. A download is checked before it is moved
into place, against the digest the event log recorded at upload when the caller gives it
(`expected`: the store's metadata can be rewritten with the object), else against the
digest in the store's metadata; a mismatch leaves no file behind.

`WEIR_ARTIFACTS_URL=s3://BUCKET/PREFIX` keeps artifacts in S3-compatible storage instead
(`weir.artifacts_s3.S3ArtifactStore`, same interface and errors); `artifact_store` picks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore
from weir_proto.errors import WeirException
from weir_proto.messages import OutputDigest

from weir.config import ARTIFACTS_BUCKET_DEFAULT as ARTIFACTS_BUCKET_DEFAULT  # the stores'
from weir.s3_storage import S3Storage

CHUNK_SIZE = 128 * 1024
"""Bytes per chunk message: far below NATS' default max_payload of 1 MiB."""
DOWNLOAD_BATCH = 8
"""Chunks pulled per request: at most DOWNLOAD_BATCH * CHUNK_SIZE bytes held at once."""
FETCH_TIMEOUT = 10.0
_DIGEST_PREFIX = "SHA-256="


class ArtifactError(WeirException):
    """An artifact could not be stored or fetched; the message says which and why."""


class ArtifactNotFound(ArtifactError):
    pass


class ArtifactChecksumError(ArtifactError):
    pass


class ArtifactIntegrityError(ArtifactChecksumError):
    """The object is not what its task uploaded: its size or SHA-256 differs from the digest
    the event log recorded, so it was replaced (or damaged) in the store since. The store's
    own metadata cannot tell: whoever can write the object can rewrite that with it."""


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    flow_id: str
    name: str
    size: int
    sha256: str
    """Hex digest of the content."""
    modified: datetime | None


class Artifacts(Protocol):
    """What every artifact store does: `ArtifactStore` (the NATS Object Store) and
    `weir.artifacts_s3.S3ArtifactStore`. Failures raise ArtifactError and its subclasses."""

    @property
    def location(self) -> str:
        """Where the artifacts are, for messages: `bucket weir-artifacts`, `s3://b/prefix`."""
        ...

    async def upload(self, flow_id: str, name: str, source: Path) -> ArtifactInfo: ...

    async def info(self, flow_id: str, name: str) -> ArtifactInfo: ...

    async def download(
        self, flow_id: str, name: str, target: Path, expected: OutputDigest | None = None
    ) -> ArtifactInfo:
        """Write the artifact to `target`, which appears only complete and verified: against
        `expected` (the digest the event log recorded at upload) when given, else against
        the store's own metadata."""
        ...

    async def delete(self, flow_id: str, name: str) -> None: ...

    async def delete_flow(self, flow_id: str) -> int: ...

    async def list(self, flow_id: str | None = None) -> list[ArtifactInfo]: ...


def artifact_store(
    js: JetStreamContext | None,
    bucket: str = ARTIFACTS_BUCKET_DEFAULT,
    s3: S3Storage | None = None,
) -> Artifacts:
    """The store artifacts live in: S3-compatible storage when `s3` is given (see
    `Settings.artifacts_s3`), else the Object Store `bucket` reached through `js`."""
    if s3 is not None:
        # Imported here: boto3 costs time and memory that deployments on NATS never pay.
        from weir.artifacts_s3 import S3ArtifactStore

        return S3ArtifactStore(s3)
    if js is None:
        raise ArtifactError(f"artifacts are kept in NATS (bucket {bucket}): connect to it first")
    return ArtifactStore(js, bucket)


def object_name(flow_id: str, name: str) -> str:
    return f"{flow_id}/{name}"


def _hex_digest(digest: str | None) -> str:
    if not digest:
        return ""
    raw = digest.removeprefix(_DIGEST_PREFIX).removeprefix(_DIGEST_PREFIX.lower())
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).hex()


def _info(obj: api.ObjectInfo) -> ArtifactInfo:
    flow_id, _, name = obj.name.partition("/")
    modified = None
    if obj.mtime:
        with contextlib.suppress(ValueError):
            modified = datetime.fromisoformat(obj.mtime.replace("Z", "+00:00"))
    return ArtifactInfo(flow_id, name, obj.size or 0, _hex_digest(obj.digest), modified)


@contextlib.contextmanager
def landing(target: Path) -> Iterator[Path]:
    """A temporary file beside `target` to download into, gone afterwards whatever happens:
    `target` appears only complete and verified (see `place_verified`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.weir-partial")
    try:
        yield partial
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def check_expected(found: ArtifactInfo, expected: OutputDigest | None) -> None:
    """Before a transfer: `ArtifactIntegrityError` when the store already describes another
    object than the one the log recorded (its own metadata may still lie: the bytes are
    checked again once they arrived, see `place_verified`)."""
    if expected is None:
        return
    if found.size != expected.size or (found.sha256 and found.sha256 != expected.sha256):
        raise _swapped(found, expected, found.sha256 or "unknown", found.size)


def _swapped(found: ArtifactInfo, expected: OutputDigest, digest: str, size: int) -> Exception:
    return ArtifactIntegrityError(
        f'artifact "{found.name}" of flow {found.flow_id} is not the one its task uploaded: '
        f"the event log recorded SHA-256 {expected.sha256} ({expected.size} bytes), the store "
        f"holds SHA-256 {digest} ({size} bytes); it was replaced or damaged in the store, "
        "so it is refused"
    )


def place_verified(
    partial: Path,
    target: Path,
    found: ArtifactInfo,
    digest: str,
    received: int,
    expected: OutputDigest | None = None,
) -> None:
    """Rename the downloaded `partial` onto `target` if it is what was uploaded: `received`
    bytes with SHA-256 `digest` matching `expected` (the event log's digest) when given,
    else the store's own metadata; else `ArtifactChecksumError` (`ArtifactIntegrityError`
    against the log)."""
    if expected is not None:
        if received != expected.size or digest != expected.sha256:
            raise _swapped(found, expected, digest, received)
        os.replace(partial, target)
        return
    where = f'artifact "{found.name}" of flow {found.flow_id}'
    if received != found.size:
        raise ArtifactChecksumError(
            f"{where} is corrupt: {received} bytes arrived, the object has {found.size}"
        )
    if digest != found.sha256:
        raise ArtifactChecksumError(
            f"{where} is corrupt: its SHA-256 is {digest}, but {found.sha256} was recorded "
            "at upload"
        )
    os.replace(partial, target)


class ArtifactStore:
    """Upload, download, list and delete artifacts in one Object Store bucket."""

    def __init__(self, js: JetStreamContext, bucket: str = ARTIFACTS_BUCKET_DEFAULT) -> None:
        self.js = js
        self.bucket = bucket
        self._store: ObjectStore | None = None

    @property
    def stream(self) -> str:
        return f"OBJ_{self.bucket}"

    @property
    def location(self) -> str:
        return f"bucket {self.bucket}"

    async def _objects(self) -> ObjectStore:
        if self._store is None:
            try:
                self._store = await self.js.object_store(self.bucket)
            except BucketNotFoundError:
                self._store = await self.js.create_object_store(
                    self.bucket,
                    config=api.ObjectStoreConfig(
                        description="weir task artifacts", storage=api.StorageType.FILE
                    ),
                )
        return self._store

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists: the scheduler does at start, so that runners
        and task pods, whose NATS users may not create streams, only ever bind to it."""
        await self._objects()

    async def upload(self, flow_id: str, name: str, source: Path) -> ArtifactInfo:
        """Store the file `source` as output `name` of `flow_id`, replacing an earlier one."""
        store = await self._objects()
        full = object_name(flow_id, name)
        meta = api.ObjectMeta(
            name=full,
            options=api.ObjectMetaOptions(max_chunk_size=CHUNK_SIZE),
        )
        try:
            with open(source, "rb") as handle:
                info = await store.put(full, handle, meta=meta)
        except OSError as exc:
            raise ArtifactError(
                f'artifact "{name}" of flow {flow_id}: cannot read {source}: {exc.strerror or exc}'
            ) from None
        return _info(info)

    async def _object(self, flow_id: str, name: str) -> api.ObjectInfo:
        store = await self._objects()
        try:
            return await store.get_info(object_name(flow_id, name))
        except (NotFoundError, ObjectNotFoundError):
            raise ArtifactNotFound(
                f'flow {flow_id} has no artifact "{name}" in bucket {self.bucket}'
            ) from None

    async def info(self, flow_id: str, name: str) -> ArtifactInfo:
        return _info(await self._object(flow_id, name))

    async def download(
        self, flow_id: str, name: str, target: Path, expected: OutputDigest | None = None
    ) -> ArtifactInfo:
        """Write the artifact to `target` (through a temporary file beside it, so `target`
        appears only complete and verified, against `expected` when given)."""
        obj = await self._object(flow_id, name)
        found = _info(obj)
        check_expected(found, expected)
        digest = hashlib.sha256()
        received = 0
        with landing(target) as partial:
            with open(partial, "wb") as out:

                def sink(data: bytes) -> None:
                    nonlocal received
                    digest.update(data)
                    out.write(data)
                    received += len(data)

                if found.size:
                    await self._copy_chunks(obj, found, sink)
            place_verified(partial, target, found, digest.hexdigest(), received, expected)
        return found

    async def _copy_chunks(
        self,
        obj: api.ObjectInfo,
        found: ArtifactInfo,
        sink: Callable[[bytes], None],
    ) -> None:
        subject = f"$O.{self.bucket}.C.{obj.nuid}"
        sub = await self.js.pull_subscribe(
            subject,
            stream=self.stream,
            config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE,
                deliver_policy=api.DeliverPolicy.ALL,
                inactive_threshold=60.0,
                mem_storage=True,
            ),
        )
        received = 0
        try:
            for _ in range(obj.chunks or 0):
                if received >= found.size:
                    break
                try:
                    msgs = await sub.fetch(DOWNLOAD_BATCH, timeout=FETCH_TIMEOUT)
                except TimeoutError:
                    raise ArtifactError(
                        f'artifact "{found.name}" of flow {found.flow_id}: no data for '
                        f"{FETCH_TIMEOUT:g}s after {received} of {found.size} bytes"
                    ) from None
                for msg in msgs:
                    sink(msg.data)
                    received += len(msg.data)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if received != found.size:
            raise ArtifactChecksumError(
                f'artifact "{found.name}" of flow {found.flow_id} is corrupt: '
                f"{received} bytes arrived, {found.size} were recorded at upload"
            )

    async def list(self, flow_id: str | None = None) -> list[ArtifactInfo]:
        """Artifacts of one flow (or all), sorted by flow and name."""
        store = await self._objects()
        try:
            objects = await store.list(ignore_deletes=True)
        except NotFoundError:
            return []
        prefix = "" if flow_id is None else f"{flow_id}/"
        found = [_info(o) for o in objects if o.name.startswith(prefix) and not o.deleted]
        return sorted(found, key=lambda a: (a.flow_id, a.name))

    async def delete(self, flow_id: str, name: str) -> None:
        """Remove one artifact: its chunks and its metadata, leaving no tombstone."""
        store = await self._objects()
        full = object_name(flow_id, name)
        with contextlib.suppress(NotFoundError, ObjectNotFoundError):
            await store.delete(full)
        meta_subject = f"$O.{self.bucket}.M.{base64.urlsafe_b64encode(full.encode()).decode()}"
        with contextlib.suppress(NotFoundError):
            await self.js.purge_stream(self.stream, subject=meta_subject)

    async def delete_flow(self, flow_id: str) -> int:
        """Delete every artifact of `flow_id`; returns how many there were."""
        artifacts = await self.list(flow_id)
        for artifact in artifacts:
            await self.delete(artifact.flow_id, artifact.name)
        return len(artifacts)


async def delete_flow_artifacts(
    js: JetStreamContext | None,
    flow_id: str,
    bucket: str = ARTIFACTS_BUCKET_DEFAULT,
    s3: S3Storage | None = None,
) -> int:
    """Delete every artifact of `flow_id` (for the pruner) from the store `artifact_store`
    picks; returns how many there were."""
    return await artifact_store(js, bucket, s3).delete_flow(flow_id)
