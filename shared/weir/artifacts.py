"""Artifacts: the files tasks hand to each other, kept in a JetStream Object Store.

One bucket per deployment (`WEIR_ARTIFACTS_BUCKET`, default `weir-artifacts`); the output
`name` of flow `flow` is the object `<flow>/<name>`. The layout is the Object Store's own
(`$O.<bucket>.C.<nuid>` chunks, `$O.<bucket>.M.<name>` metadata), so `nats object ls|get`
reads the same bucket.

Transfers stream: an upload reads the file one chunk at a time (nats-py's `put` does,
given a file object), and a read pulls bounded batches of chunks from a pull consumer of its
own, deleted when the read ends however it ends, instead of nats-py's `get`, whose push
consumer may queue the whole object in memory when the disk is slower than the network.

Every read is checked against the digest the event log recorded at upload when the caller
gives it (`expected`: the store's metadata can be rewritten with the object), else against
the digest in the store's metadata. `read` hands the bytes on as they arrive (weir-web
streams them to an HTTP client) and holds back the last chunk until the whole object is
checked, so a reader of a corrupt or short object never gets as many bytes as it was told
to expect; `download` writes them to a file that appears only complete and checked.

`WEIR_ARTIFACTS_URL=s3://BUCKET/PREFIX` keeps artifacts in S3-compatible storage instead
(`weir.artifacts_s3.S3ArtifactStore`, same interface and errors); `artifact_store` picks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

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
CONSUMER_IDLE_SECONDS = 60.0
"""A read's consumer is deleted when the read ends; the server drops it after this long
idle if even that failed (the connection gone)."""
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


@dataclass(frozen=True, slots=True)
class ArtifactReader:
    """An artifact being read: what the store recorded of it, and its bytes as they arrive
    (`verified_chunks`: a corrupt or short object raises ArtifactChecksumError before the
    last chunk, never ends as if whole)."""

    info: ArtifactInfo
    chunks: AsyncGenerator[bytes, None]


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

    def read(
        self, flow_id: str, name: str, expected: OutputDigest | None = None
    ) -> contextlib.AbstractAsyncContextManager[ArtifactReader]:
        """The artifact's bytes as the store hands them out, checked on the way (see
        `ArtifactReader`); whatever the read held in the store (a consumer, a connection)
        is released when the context ends, also when its reader stopped half-way."""
        ...

    async def delete(self, flow_id: str, name: str) -> None: ...

    async def delete_flow(self, flow_id: str) -> int: ...

    async def list(self, flow_id: str | None = None) -> list[ArtifactInfo]: ...


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


async def quietly(call: Coroutine[Any, Any, Any]) -> None:
    """`call`, its failure ignored: cleanup that the server's idle timeout backs up."""
    with contextlib.suppress(Exception):
        await call


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
    `target` appears only complete and verified (see `place_verified`). Open it with mode
    `xb`: it is made anew, so a link left in its place is never followed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.weir-partial")
    with contextlib.suppress(FileNotFoundError):  # (created anew: never through a link)
        partial.unlink()
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


def check_verifiable(found: ArtifactInfo, expected: OutputDigest | None, where: str) -> None:
    """Before a transfer: `ArtifactChecksumError` when nothing says what the bytes must be
    (no digest from the log, none in the store's metadata of the object at `where`)."""
    if expected is None and not found.sha256:
        raise ArtifactChecksumError(
            f'artifact "{found.name}" of flow {found.flow_id} cannot be verified: {where} '
            "has no SHA-256 in its metadata; was it stored by weir?"
        )


def check_received(
    found: ArtifactInfo, digest: str, received: int, expected: OutputDigest | None = None
) -> None:
    """`received` bytes with SHA-256 `digest` arrived: `ArtifactChecksumError` unless they
    match `expected` (the event log's digest) when given, else the store's own metadata
    (`ArtifactIntegrityError` against the log)."""
    if expected is not None:
        if received != expected.size or digest != expected.sha256:
            raise _swapped(found, expected, digest, received)
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


def place_verified(
    partial: Path,
    target: Path,
    found: ArtifactInfo,
    digest: str,
    received: int,
    expected: OutputDigest | None = None,
) -> None:
    """Rename the downloaded `partial` onto `target` if it is what was uploaded (see
    `check_received`)."""
    check_received(found, digest, received, expected)
    os.replace(partial, target)


async def verified_chunks(
    found: ArtifactInfo, expected: OutputDigest | None, source: AsyncIterator[bytes]
) -> AsyncGenerator[bytes, None]:
    """The chunks of `source`, one behind: the last is handed on only once every byte is
    checked (`check_received`), and a chunk past the recorded size is never handed on. So
    whoever reads a corrupt or short object gets an ArtifactChecksumError and fewer bytes
    than the recorded size, never a whole-looking copy."""
    size = found.size if expected is None else expected.size
    digest = hashlib.sha256()
    received = 0
    held = b""
    async for data in source:
        if not data:
            continue
        digest.update(data)
        received += len(data)
        if received > size:
            break  # checked below: more bytes than were uploaded
        if held:
            yield held
        held = data
    check_received(found, digest.hexdigest(), received, expected)
    if held:
        yield held


_RELEASING: set[asyncio.Task[Any]] = set()


async def release(cleanup: Coroutine[Any, Any, Any]) -> None:
    """Run `cleanup` to its end even when the caller is cancelled: an HTTP client that
    goes away mid-download cancels the response's task, and under anyio every later await
    of it again, which would leave the store's consumer or connection behind."""
    task = asyncio.ensure_future(cleanup)
    _RELEASING.add(task)
    task.add_done_callback(_RELEASING.discard)
    await asyncio.shield(task)


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
        async with self.read(flow_id, name, expected) as reader:
            with landing(target) as partial:
                with open(partial, "xb") as out:
                    async for chunk in reader.chunks:
                        out.write(chunk)
                os.replace(partial, target)
        return reader.info

    @contextlib.asynccontextmanager
    async def read(
        self, flow_id: str, name: str, expected: OutputDigest | None = None
    ) -> AsyncIterator[ArtifactReader]:
        """The artifact's chunks as they arrive, through a pull consumer of this read's
        own, deleted when the context ends (see `Artifacts.read`)."""
        obj = await self._object(flow_id, name)
        found = _info(obj)
        check_expected(found, expected)
        check_verifiable(found, expected, f"object {obj.name} in bucket {self.bucket}")
        if not found.size:
            yield ArtifactReader(found, verified_chunks(found, expected, _nothing()))
            return
        consumer = f"weir-read-{secrets.token_hex(8)}"
        info = await self.js.add_consumer(
            self.stream,
            config=api.ConsumerConfig(
                name=consumer,
                filter_subject=f"$O.{self.bucket}.C.{obj.nuid}",
                ack_policy=api.AckPolicy.NONE,
                deliver_policy=api.DeliverPolicy.ALL,
                inactive_threshold=CONSUMER_IDLE_SECONDS,
                mem_storage=True,
            ),
        )
        try:
            held = info.num_pending or 0
            if held != (obj.chunks or 0):
                raise ArtifactChecksumError(
                    f'artifact "{name}" of flow {flow_id} is corrupt: bucket {self.bucket} '
                    f"holds {held} of its chunks, {obj.chunks} were recorded at upload"
                )
            sub = await self.js.pull_subscribe_bind(consumer=consumer, stream=self.stream)
            try:
                chunks = self._chunks(sub, found, held)
                yield ArtifactReader(found, verified_chunks(found, expected, chunks))
            finally:
                await release(quietly(sub.unsubscribe()))
        finally:
            await release(quietly(self.js.delete_consumer(self.stream, consumer)))

    async def _chunks(
        self, sub: JetStreamContext.PullSubscription, found: ArtifactInfo, count: int
    ) -> AsyncIterator[bytes]:
        """The `count` chunk messages the consumer holds, pulled DOWNLOAD_BATCH at a time."""
        left = count
        received = 0
        while left > 0:
            try:
                msgs = await sub.fetch(min(DOWNLOAD_BATCH, left), timeout=FETCH_TIMEOUT)
            except TimeoutError:
                raise ArtifactError(
                    f'artifact "{found.name}" of flow {found.flow_id}: no data for '
                    f"{FETCH_TIMEOUT:g}s after {received} of {found.size} bytes"
                ) from None
            left -= len(msgs)
            for msg in msgs:
                received += len(msg.data)
                yield msg.data

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
