"""`/flows/{id}/artifacts`: a flow's artifacts, and each one's bytes, streamed from the store
as they arrive, with the length and SHA-256 the store recorded at upload."""

from __future__ import annotations

import base64
import contextlib
import logging

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from weir.artifacts import (
    ArtifactError,
    ArtifactInfo,
    ArtifactReader,
    check_verifiable,
    release,
)

from weir_web.bodies import Artifact
from weir_web.config import Role
from weir_web.endpoints import Endpoints, json_response, route
from weir_web.params import artifact_name_of, flow_id_of

log = logging.getLogger("weir.web")


class ArtifactRoutes(Endpoints):
    @route("GET", "/flows/{flow_id}/artifacts", Role.viewer)
    async def artifacts(self, request: Request) -> Response:
        flow_id = flow_id_of(request)
        found = await self.backends.artifacts.list(flow_id)
        return json_response([Artifact(a.name, a.size, a.sha256, a.modified) for a in found])

    @route("GET", "/flows/{flow_id}/artifacts/{name}", Role.viewer)
    async def artifact(self, request: Request) -> Response:
        """The artifact's bytes, handed on chunk by chunk as the store sends them (never
        held whole, nor spooled to disk). A missing artifact, or one the store already shows
        damaged, is an error answer; one found corrupt on the way is cut short (see
        `ArtifactDownload`)."""
        flow_id = flow_id_of(request)
        name = artifact_name_of(request)
        if request.method == "HEAD":  # the headers alone: nothing is read from the store
            store = self.backends.artifacts
            info = await store.info(flow_id, name)
            check_verifiable(info, None, store.location)  # as a GET would refuse it
            return Response(status_code=200, headers=download_headers(info))
        reading = contextlib.AsyncExitStack()
        try:
            reader = await reading.enter_async_context(self.backends.artifacts.read(flow_id, name))
        except BaseException:
            await reading.aclose()
            raise
        return ArtifactDownload(reader, reading)


def download_headers(info: ArtifactInfo) -> dict[str, str]:
    """The length and SHA-256 the store recorded at upload, and the file's name."""
    digest = base64.b64encode(bytes.fromhex(info.sha256)).decode()
    return {
        "Content-Length": str(info.size),
        "Content-Type": "application/octet-stream",
        "X-Weir-SHA256": info.sha256,
        "Repr-Digest": f"sha-256=:{digest}:",
        "Content-Disposition": f'attachment; filename="{info.name}"',
    }


class ArtifactDownload(StreamingResponse):
    """An artifact's bytes with `Content-Length`, `X-Weir-SHA256` and `Repr-Digest` from
    the store's record of the upload.

    Its chunks are checked as they pass (`weir.artifacts.verified_chunks` holds the last
    one back until the whole is checked): a corrupt or short object ends the response
    before its `Content-Length` is reached, so the connection closes on an incomplete body
    and the client sees a broken download, never a whole-looking one; weir-web logs it. The
    read's hold on the store (a NATS consumer and its subscription, an S3 connection) is
    released when the response ends, however it ends: finished, cut, or left by a client
    that stopped reading."""

    def __init__(self, reader: ArtifactReader, reading: contextlib.AsyncExitStack) -> None:
        headers = download_headers(reader.info)
        super().__init__(reader.chunks, media_type="application/octet-stream", headers=headers)
        self.reader = reader
        self.reading = reading

    async def stream_response(self, send: Send) -> None:
        info = self.reader.info
        sent = 0
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            async for chunk in self.reader.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
        except ArtifactError as exc:
            log.error(
                'artifact "%s" of flow %s: download cut after %d of %d bytes: %s',
                info.name,
                info.flow_id,
                sent,
                info.size,
                exc,
            )
            return  # incomplete: the server closes the connection
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await release(self._close())

    async def _close(self) -> None:
        await self.reader.chunks.aclose()
        await self.reading.aclose()
