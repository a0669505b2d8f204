"""`GET /flows/{id}/artifacts/{name}` streams the artifact from the store to the client as
it arrives, against real NATS (and S3 through moto's server): the bytes and their SHA-256
match, weir-web's memory does not grow with the artifact, a client that stops reading leaves
no consumer or subscription behind, and a corrupt object is never delivered as if whole."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from nats.js import JetStreamContext
from weir.artifacts import (
    CHUNK_SIZE,
    CONSUMER_IDLE_SECONDS,
    Artifacts,
    ArtifactStore,
    artifact_store,
)
from weir.artifacts_s3 import DIGEST_METADATA, S3ArtifactStore, _client
from weir.config import Settings
from weir.embedded import free_port
from weir.jetstream import close, connect
from weir.s3_storage import S3Storage
from weir_web.app import nats_backends, web_server
from weir_web.config import WebSettings, parse_tokens
from weir_web.endpoints import Backends

from tests.s3 import on_storage, s3_endpoint, storage
from tests.waiting import eventually
from tests.web.conftest import SESSION_KEY, TOKENS, tokens_text

__all__ = ["s3_endpoint", "storage"]  # fixtures

MIB = 1024 * 1024
FLOW = "downloads"
LARGE = 64 * MIB
HELD_RECEIVE_BUFFER = 64 * 1024
"""Bytes a client holding a download open lets the kernel take for it (a sixteen-MiB
artifact must not fit in what the two ends buffer)."""
RELEASED_WITHIN = CONSUMER_IDLE_SECONDS / 3
"""A read's consumer must be gone well before the server would drop it as idle: only
weir-web's own cleanup passes."""
PEAK_BOUND = LARGE // 8
"""tracemalloc's peak over the whole process (weir-web and the test's client) while 64 MiB
stream through: measured ~1-2 MiB (a few batches of 128 KiB chunks in flight); an eighth of
the artifact still fails any whole-object buffer."""


@dataclass
class Served:
    """weir-web in this process, with the backends it connected (to look at its NATS
    subscriptions), and a store of its own for the test to upload with."""

    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]
    backends: list[Backends]
    store: Artifacts
    js: JetStreamContext | None

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {TOKENS['viewer']}"},
            timeout=60,
        )

    def subscriptions(self) -> int:
        """How many subscriptions weir-web's NATS connection holds (nats-py keeps no public
        count of them)."""
        return len(self.backends[0].client.nc._subs)

    async def consumers(self) -> int:
        assert isinstance(self.store, ArtifactStore) and self.js is not None
        return len(await self.js.consumers_info(self.store.stream))


async def _serve(settings: Settings, store_settings: Settings) -> AsyncIterator[Served]:
    connected: list[Backends] = []
    connect_backends = nats_backends(store_settings, None)

    async def recording() -> Backends:
        connected.append(await connect_backends())
        return connected[-1]

    web = WebSettings(
        host="127.0.0.1",
        port=free_port(),
        tokens=parse_tokens(tokens_text(), "tokens"),
        session_key=SESSION_KEY,
    )
    server = web_server(web, recording)
    task = asyncio.create_task(server.serve())
    await eventually(
        lambda: asyncio.sleep(0, server.started or task.done()), bool, "weir-web started"
    )
    assert not task.done()
    nc = await connect(settings.nats_url, "test-downloads")
    js = nc.jetstream()
    store = artifact_store(js, store_settings.artifacts_bucket, store_settings.artifacts_s3)
    try:
        yield Served(f"http://127.0.0.1:{web.port}", server, task, connected, store, js)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        await close(nc)


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    async for running in _serve(settings, settings):
        yield running


@pytest.fixture
async def served_s3(settings: Settings, storage: S3Storage) -> AsyncIterator[Served]:
    async for running in _serve(settings, on_storage(settings, storage)):
        yield running


def _incompressible(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(MIB, left))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


async def _upload(served: Served, tmp_path: Path, name: str, size: int) -> str:
    source = tmp_path / f"{name}.bin"
    digest = await asyncio.to_thread(_incompressible, source, size)
    info = await served.store.upload(FLOW, name, source)
    source.unlink()
    assert (info.size, info.sha256) == (size, digest)
    return digest


@dataclass
class Fetched:
    status: int
    headers: httpx.Headers
    received: int
    sha256: str
    peak: int
    """tracemalloc's peak over the download, above what was traced when it began."""


async def _download(served: Served, name: str) -> Fetched:
    digest = hashlib.sha256()
    received = 0
    async with served.client() as http:
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            async with http.stream("GET", f"/flows/{FLOW}/artifacts/{name}") as response:
                async for chunk in response.aiter_raw():
                    digest.update(chunk)
                    received += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return Fetched(
        response.status_code, response.headers, received, digest.hexdigest(), peak - base
    )


async def test_a_64_mib_artifact_streams_whole_with_its_sha256_in_bounded_memory(
    served: Served, tmp_path: Path
) -> None:
    await _streams_in_bounded_memory(served, tmp_path, "nats")


async def test_a_64_mib_s3_artifact_streams_whole_with_its_sha256_in_bounded_memory(
    served_s3: Served, tmp_path: Path
) -> None:
    await _streams_in_bounded_memory(served_s3, tmp_path, "s3")


async def _streams_in_bounded_memory(web: Served, tmp_path: Path, backend: str) -> None:
    small_digest = await _upload(web, tmp_path, "small", 4 * MIB)
    large_digest = await _upload(web, tmp_path, "large", LARGE)

    small = await _download(web, "small")
    large = await _download(web, "large")

    print(
        f"\n{backend}: tracemalloc peak while streaming 4 MiB: {small.peak / MIB:.1f} MiB, "
        f"64 MiB: {large.peak / MIB:.1f} MiB"
    )
    for fetched, size, digest in ((small, 4 * MIB, small_digest), (large, LARGE, large_digest)):
        assert fetched.status == 200
        assert fetched.headers["content-length"] == str(size) and fetched.received == size
        assert fetched.headers["x-weir-sha256"] == fetched.sha256 == digest
    async with web.client() as http:
        head = await http.head(f"/flows/{FLOW}/artifacts/large")  # the headers, no bytes read
    assert head.status_code == 200 and head.content == b""
    assert (head.headers["content-length"], head.headers["x-weir-sha256"]) == (
        str(LARGE),
        large_digest,
    )
    assert large.peak < PEAK_BOUND, f"{large.peak / MIB:.1f} MiB traced at the peak"
    # Sixteen times the bytes, about the same memory: nothing grows with the artifact.
    assert large.peak < 2 * small.peak + 2 * MIB


async def test_a_client_that_stops_reading_leaves_no_consumer_or_subscription(
    served: Served, tmp_path: Path
) -> None:
    await _upload(served, tmp_path, "large", 16 * MIB)
    await _upload(served, tmp_path, "tiny", 10)
    consumers = await served.consumers()
    assert (await _download(served, "tiny")).received == 10  # weir-web's own inboxes made
    # (a finished download releases its consumer just after its last byte)
    await eventually(
        served.consumers, lambda n: n == consumers, "the tiny read's consumer", RELEASED_WITHIN
    )
    subscriptions = served.subscriptions()
    reader, writer = await _request_held_open(served, "large")
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    assert await reader.read(1)  # the artifact's bytes began
    # While the download is open, it holds one consumer and its subscription.
    assert await served.consumers() == consumers + 1
    assert served.subscriptions() == subscriptions + 1
    writer.close()  # the client goes away, most of 16 MiB unread

    await eventually(
        served.consumers, lambda n: n == consumers, "the read's consumer deleted", RELEASED_WITHIN
    )
    await eventually(
        lambda: asyncio.sleep(0, served.subscriptions()),
        lambda n: n == subscriptions,
        "the read's subscription gone",
    )
    again = await _download(served, "large")  # and weir-web serves on
    assert again.received == 16 * MIB


async def _request_held_open(
    served: Served, name: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A GET of the artifact from a client that reads nothing until told: its socket's
    receive buffer is fixed small (64 KiB, which turns off the kernel's autotuning, up to
    32 MiB on some machines), so weir-web cannot write the whole artifact into the kernel's
    buffers and end the read on its own while the test looks at it."""
    host, port = served.url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, HELD_RECEIVE_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=HELD_RECEIVE_BUFFER)
    writer.write(
        f"GET /api/v1/flows/{FLOW}/artifacts/{name} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {TOKENS['viewer']}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def _replace_last_chunk(js: JetStreamContext, store: ArtifactStore, name: str) -> int:
    """Put other bytes of the same length in place of the object's last chunk, as bit rot
    or tampering would (its metadata unchanged); returns the chunk's length."""
    info = await (await js.object_store(store.bucket)).get_info(f"{FLOW}/{name}")
    subject = f"$O.{store.bucket}.C.{info.nuid}"
    last = await js.get_last_msg(store.stream, subject)
    assert last.data is not None and last.seq is not None
    await js.delete_msg(store.stream, last.seq)
    await js.publish(subject, bytes(b ^ 0xFF for b in last.data))
    return len(last.data)


async def test_a_corrupt_object_is_cut_short_and_logged_never_delivered_whole(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = 3 * CHUNK_SIZE + 1000
    await _upload(served, tmp_path, "rotten", size)
    assert isinstance(served.store, ArtifactStore) and served.js is not None
    last = await _replace_last_chunk(served.js, served.store, "rotten")
    consumers = await served.consumers()
    received = 0
    caplog.set_level(logging.ERROR, logger="weir.web")
    async with (
        served.client() as http,
        http.stream("GET", f"/flows/{FLOW}/artifacts/rotten") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-length"] == str(size)
        with pytest.raises(httpx.RemoteProtocolError):  # the body ended short
            async for chunk in response.aiter_raw():
                received += len(chunk)
    assert received == size - last, "everything but the chunk that could not be checked"
    cut = [r.getMessage() for r in caplog.records if "download cut" in r.getMessage()]
    assert cut == [
        f'artifact "rotten" of flow {FLOW}: download cut after {size - last} of {size} bytes: '
        f'artifact "rotten" of flow {FLOW} is corrupt: its SHA-256 is '
        + cut[0].rsplit("its SHA-256 is ", 1)[1]
    ]
    assert "was recorded at upload" in cut[0]
    await eventually(
        served.consumers, lambda n: n == consumers, "the read's consumer deleted", RELEASED_WITHIN
    )


async def test_an_object_missing_a_chunk_is_an_error_before_any_byte(
    served: Served, tmp_path: Path
) -> None:
    await _upload(served, tmp_path, "short", 2 * CHUNK_SIZE + 5)
    assert isinstance(served.store, ArtifactStore) and served.js is not None
    info = await (await served.js.object_store(served.store.bucket)).get_info(f"{FLOW}/short")
    last = await served.js.get_last_msg(
        served.store.stream, f"$O.{served.store.bucket}.C.{info.nuid}"
    )
    assert last.seq is not None
    await served.js.delete_msg(served.store.stream, last.seq)
    consumers = await served.consumers()
    async with served.client() as http:
        answer = await http.get(f"/flows/{FLOW}/artifacts/short")
    assert answer.status_code == 500
    assert answer.json()["error"] == {
        "code": "internal",
        "message": f'artifact "short" of flow {FLOW} is corrupt: bucket '
        f"{served.store.bucket} holds 2 of its chunks, 3 were recorded at upload",
    }
    await eventually(
        served.consumers, lambda n: n == consumers, "the read's consumer deleted", RELEASED_WITHIN
    )


async def test_a_corrupt_s3_object_is_cut_short_too(
    served_s3: Served, storage: S3Storage, tmp_path: Path
) -> None:
    size = 3 * MIB + 7
    digest = await _upload(served_s3, tmp_path, "rotten", size)
    assert isinstance(served_s3.store, S3ArtifactStore)
    _client(storage).put_object(  # other bytes under the recorded digest
        Bucket=storage.bucket,
        Key=served_s3.store.key(FLOW, "rotten"),
        Body=os.urandom(size),
        Metadata={DIGEST_METADATA: digest},
    )
    received = 0
    async with (
        served_s3.client() as http,
        http.stream("GET", f"/flows/{FLOW}/artifacts/rotten") as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            async for chunk in response.aiter_raw():
                received += len(chunk)
    assert 0 < received < size
