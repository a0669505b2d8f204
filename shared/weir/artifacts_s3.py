"""Artifacts in S3-compatible storage: `WEIR_ARTIFACTS_URL=s3://BUCKET/PREFIX`.

The same interface and errors as the NATS Object Store's `ArtifactStore`, for data too large
for a JetStream stream. The output `name` of flow `flow` is the object
`<prefix>/<flow>/<name>`; its SHA-256 is computed before the upload, stored as the object's
metadata `sha256` (`x-amz-meta-sha256`), and checked after every download, which goes to a
hidden temporary file renamed into place only when verified.

boto3 blocks, so each call runs in a thread (`asyncio.to_thread`). Transfers stream: an
upload reads the file part by part (multipart from `MULTIPART_CHUNK`), a download writes
ranged parts straight into the file, so memory stays bounded by `TRANSFER` whatever the size.
A transfer whose caller is cancelled finishes in its thread; a download's partial file is
removed either way. `read` hands the object on as it arrives (weir-web streams it to an HTTP
client): one GET whose body is read `READ_CHUNK` bytes at a time, checked on the way
(`weir.artifacts.verified_chunks`), its connection closed when the read ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from weir_proto.messages import OutputDigest

from weir.artifacts import (
    ArtifactError,
    ArtifactInfo,
    ArtifactNotFound,
    ArtifactReader,
    check_expected,
    check_verifiable,
    landing,
    place_verified,
    quietly,
    release,
    verified_chunks,
)
from weir.s3_storage import S3Storage

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MULTIPART_CHUNK = 8 * 1024 * 1024
"""Part size of multipart transfers, and the size from which an upload is multipart."""
TRANSFER_CONCURRENCY = 4
TRANSFER = TransferConfig(
    multipart_threshold=MULTIPART_CHUNK,
    multipart_chunksize=MULTIPART_CHUNK,
    max_concurrency=TRANSFER_CONCURRENCY,
    max_io_queue=16,  # downloaded chunks waiting for the disk: 16 * 256 KiB at most
)
"""s3transfer adjusts the part size up for objects above 10,000 parts (78 GiB)."""
READ_CHUNK = 256 * 1024
"""Bytes `read` takes from the GET's body at a time."""
DIGEST_METADATA = "sha256"
DELETE_BATCH = 1000
"""Keys per DeleteObjects request (S3's limit)."""
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
MAX_ATTEMPTS = 5
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


@functools.lru_cache(maxsize=8)
def _client(storage: S3Storage) -> S3Client:
    """One client per storage: clients are thread-safe, and slow to make."""
    config = Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        max_pool_connections=4 * TRANSFER_CONCURRENCY,
        # MinIO, Ceph and moto serve every bucket under the endpoint's own host name.
        s3={"addressing_style": "path" if storage.endpoint_url else "auto"},
        # The SHA-256 is checked end to end; boto3's default CRC trailers are refused by
        # some S3-compatible servers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=storage.endpoint_url or None,
        region_name=storage.region or None,
        aws_access_key_id=storage.access_key_id or None,
        aws_secret_access_key=storage.secret_access_key or None,
        aws_session_token=storage.session_token or None,
        config=config,
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ArtifactStore:
    """Upload, download, list and delete artifacts under one prefix of an S3 bucket."""

    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage
        self.bucket = storage.bucket

    @property
    def location(self) -> str:
        return self.storage.url

    @property
    def _root(self) -> str:
        return f"{self.storage.prefix}/" if self.storage.prefix else ""

    def key(self, flow_id: str, name: str) -> str:
        """The object key of output `name` of `flow_id`."""
        return f"{self._root}{flow_id}/{name}"

    def _failed(self, what: str, exc: Exception) -> ArtifactError:
        """`exc` from boto3 as an ArtifactError saying what failed and what to do."""
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            message = exc.response.get("Error", {}).get("Message") or str(exc)
            reason = f"{code}: {message}" if code else message
            if code == "NoSuchBucket":
                reason += f" (create the bucket {self.bucket}, or fix WEIR_ARTIFACTS_URL)"
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                reason += " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and their rights)"
            elif code == "PreconditionFailed":  # s3transfer reads the parts with If-Match
                reason += " (the object was replaced while it was read: try again)"
        elif isinstance(exc, NoCredentialsError):
            reason = (
                "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or give the process a role)"
            )
        else:
            reason = str(exc)
        return ArtifactError(f"{what} in {self.location}: {reason}")

    @contextlib.contextmanager
    def _calling(self, what: str, flow_id: str = "", name: str = "") -> Iterator[None]:
        """boto3's errors as ArtifactErrors; a missing object of artifact `name` as
        ArtifactNotFound."""
        try:
            yield
        except (BotoCoreError, Boto3Error, ClientError) as exc:
            # upload_file raises an S3UploadFailedError while handling the ClientError that
            # says why.
            cause = exc.__context__ if isinstance(exc.__context__, ClientError) else exc
            if name and isinstance(cause, ClientError) and _error_code(cause) in _NOT_FOUND:
                # A HEAD answers a bare 404 for a missing bucket too: tell the two apart.
                if not self._bucket_exists():
                    raise self._failed(
                        what,
                        ClientError(
                            {"Error": {"Code": "NoSuchBucket", "Message": "no such bucket"}},
                            "HeadBucket",
                        ),
                    ) from None
                raise ArtifactNotFound(
                    f'flow {flow_id} has no artifact "{name}" in {self.location}'
                ) from None
            raise self._failed(what, cause) from None

    def _bucket_exists(self) -> bool:
        """False only when S3 says the bucket is not there (other errors: assume it is)."""
        try:
            _client(self.storage).head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return _error_code(exc) not in (*_NOT_FOUND, "NoSuchBucket")
        except (BotoCoreError, Boto3Error):
            return True
        return True

    async def upload(self, flow_id: str, name: str, source: Path) -> ArtifactInfo:
        """Store the file `source` as output `name` of `flow_id`, replacing an earlier one.
        The file is opened here, once, and the upload's thread reads that open file alone
        and closes it when it ends (a cancelled upload runs on in its thread: it must not
        read whatever file gets the same name or descriptor number meanwhile)."""
        try:
            handle = open(source, "rb")  # noqa: SIM115 - the upload's thread closes it
        except OSError as exc:
            raise ArtifactError(
                f'artifact "{name}" of flow {flow_id}: cannot read {source}: {exc.strerror or exc}'
            ) from None
        return await asyncio.to_thread(self._upload, flow_id, name, handle)

    def _upload(self, flow_id: str, name: str, handle: io.BufferedReader) -> ArtifactInfo:
        with handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            size = os.fstat(handle.fileno()).st_size
            with self._calling(f'artifact "{name}" of flow {flow_id}: cannot store it'):
                # By name, not file object: s3transfer then reads each part from the disk as
                # it sends it instead of holding parts in memory. The name is this open
                # file's own (/proc/self/fd/N reopens the very file), open until the end.
                _client(self.storage).upload_file(
                    f"/proc/self/fd/{handle.fileno()}",
                    self.bucket,
                    self.key(flow_id, name),
                    ExtraArgs={"Metadata": {DIGEST_METADATA: digest}},
                    Config=TRANSFER,
                )
        return ArtifactInfo(flow_id, name, size, digest, datetime.now(UTC))

    async def info(self, flow_id: str, name: str) -> ArtifactInfo:
        return await asyncio.to_thread(self._head, flow_id, name)

    def _head(self, flow_id: str, name: str) -> ArtifactInfo:
        with self._calling(
            f'artifact "{name}" of flow {flow_id}: cannot look it up', flow_id, name
        ):
            head = _client(self.storage).head_object(
                Bucket=self.bucket, Key=self.key(flow_id, name)
            )
        return ArtifactInfo(
            flow_id,
            name,
            head.get("ContentLength", 0),
            head.get("Metadata", {}).get(DIGEST_METADATA, ""),
            head.get("LastModified"),
        )

    async def download(
        self, flow_id: str, name: str, target: Path, expected: OutputDigest | None = None
    ) -> ArtifactInfo:
        """Write the artifact to `target` (through a temporary file beside it, so `target`
        appears only complete and verified, against `expected` when given)."""
        return await asyncio.to_thread(self._download, flow_id, name, target, expected)

    def _download(
        self, flow_id: str, name: str, target: Path, expected: OutputDigest | None
    ) -> ArtifactInfo:
        found = self._head(flow_id, name)
        check_expected(found, expected)
        check_verifiable(found, expected, self._object_at(flow_id, name))
        with landing(target) as partial:
            with (
                self._calling(
                    f'artifact "{name}" of flow {flow_id}: cannot fetch it', flow_id, name
                ),
                open(partial, "xb") as out,
            ):
                _client(self.storage).download_fileobj(
                    self.bucket,
                    self.key(flow_id, name),
                    out,
                    Config=TRANSFER,
                )
            with open(partial, "rb") as back:
                digest = hashlib.file_digest(back, "sha256").hexdigest()
                received = os.fstat(back.fileno()).st_size
            place_verified(partial, target, found, digest, received, expected)
        return found

    def _object_at(self, flow_id: str, name: str) -> str:
        return f"the object {self.key(flow_id, name)} in {self.location}"

    @contextlib.asynccontextmanager
    async def read(
        self, flow_id: str, name: str, expected: OutputDigest | None = None
    ) -> AsyncIterator[ArtifactReader]:
        """The artifact's bytes as one GET's body hands them out, checked on the way; the
        body's connection is closed when the context ends (see `Artifacts.read`)."""
        found, body = await asyncio.to_thread(self._get, flow_id, name)
        try:
            check_expected(found, expected)
            check_verifiable(found, expected, self._object_at(flow_id, name))
            chunks = self._body_chunks(body, found)
            yield ArtifactReader(found, verified_chunks(found, expected, chunks))
        finally:
            await release(quietly(asyncio.to_thread(body.close)))

    def _get(self, flow_id: str, name: str) -> tuple[ArtifactInfo, Any]:
        """What the object's GET says of it (its length and metadata: the same object as its
        body, which a separate HEAD could not promise), and the body, not read yet."""
        with self._calling(f'artifact "{name}" of flow {flow_id}: cannot fetch it', flow_id, name):
            got = _client(self.storage).get_object(Bucket=self.bucket, Key=self.key(flow_id, name))
        found = ArtifactInfo(
            flow_id,
            name,
            got.get("ContentLength", 0),
            got.get("Metadata", {}).get(DIGEST_METADATA, ""),
            got.get("LastModified"),
        )
        return found, got["Body"]

    async def _body_chunks(self, body: Any, found: ArtifactInfo) -> AsyncIterator[bytes]:
        what = f'artifact "{found.name}" of flow {found.flow_id}: cannot fetch it'
        while True:
            with self._calling(what):
                data: bytes = await asyncio.to_thread(body.read, READ_CHUNK)
            if not data:
                return
            yield data

    def _keys(self, flow_id: str | None) -> Iterator[str]:
        prefix = self._root if flow_id is None else f"{self._root}{flow_id}/"
        pages = _client(self.storage).get_paginator("list_objects_v2")
        with self._calling(f"cannot list the artifacts of {flow_id or 'all flows'}"):
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    key = obj.get("Key", "")
                    flow, _, name = key.removeprefix(self._root).partition("/")
                    if flow and name:
                        yield key

    async def delete(self, flow_id: str, name: str) -> None:
        """Remove one artifact (nothing happens when there is none)."""
        await asyncio.to_thread(self._delete, flow_id, name)

    def _delete(self, flow_id: str, name: str) -> None:
        with self._calling(f'artifact "{name}" of flow {flow_id}: cannot delete it'):
            _client(self.storage).delete_object(Bucket=self.bucket, Key=self.key(flow_id, name))

    async def delete_flow(self, flow_id: str) -> int:
        """Delete every artifact of `flow_id`; returns how many there were."""
        return await asyncio.to_thread(self._delete_flow, flow_id)

    def _delete_flow(self, flow_id: str) -> int:
        keys = [*self._keys(flow_id)]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with self._calling(f"cannot delete the artifacts of flow {flow_id}"):
                answer = _client(self.storage).delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                raise ArtifactError(
                    f"cannot delete {first.get('Key')} in {self.location}: "
                    f"{first.get('Code')}: {first.get('Message')}{more}"
                )
        return len(keys)

    def _list(self, flow_id: str | None) -> list[ArtifactInfo]:
        found: list[ArtifactInfo] = []
        for key in self._keys(flow_id):
            flow, _, name = key.removeprefix(self._root).partition("/")
            with contextlib.suppress(ArtifactNotFound):  # deleted since it was listed
                found.append(self._head(flow, name))
        return sorted(found, key=lambda a: (a.flow_id, a.name))

    async def list(self, flow_id: str | None = None) -> list[ArtifactInfo]:
        """Artifacts of one flow (or all), sorted by flow and name. Reads each object's
        metadata for its digest: one request per artifact."""
        return await asyncio.to_thread(self._list, flow_id)
