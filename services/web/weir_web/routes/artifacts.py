"""`/flows/{id}/artifacts`: a flow's artifacts, and each one's bytes, streamed with its length
and SHA-256."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from weir_web.bodies import Artifact
from weir_web.config import Role
from weir_web.endpoints import ApiRoute, Endpoints, json_response
from weir_web.params import artifact_name_of, flow_id_of

COPY_CHUNK = 64 * 1024


class ArtifactRoutes(Endpoints):
    def routes(self) -> list[ApiRoute]:
        return [
            self.api_route("/flows/{flow_id}/artifacts", self.artifacts, "GET", Role.viewer),
            self.api_route("/flows/{flow_id}/artifacts/{name}", self.artifact, "GET", Role.viewer),
        ]

    async def artifacts(self, request: Request) -> Response:
        flow_id = flow_id_of(request)
        found = await self.backends.artifacts.list(flow_id)
        return json_response([Artifact(a.name, a.size, a.sha256, a.modified) for a in found])

    async def artifact(self, request: Request) -> Response:
        """The artifact's bytes, checked against the SHA-256 recorded at upload before the
        first byte is sent: fetched in bounded chunks into a spool file (deleted as soon as
        it is open), then streamed from it; never held whole in memory."""
        flow_id = flow_id_of(request)
        name = artifact_name_of(request)
        store = self.backends.artifacts
        spool = Path(tempfile.mkdtemp(prefix="weir-web-"))
        try:
            info = await store.download(flow_id, name, spool / "artifact")
            handle = open(spool / "artifact", "rb")  # noqa: SIM115 - closed by the stream
        finally:
            with contextlib.suppress(FileNotFoundError):
                (spool / "artifact").unlink()
            spool.rmdir()

        async def body() -> AsyncIterator[bytes]:
            with handle:
                while chunk := await asyncio.to_thread(handle.read, COPY_CHUNK):
                    yield chunk

        digest = base64.b64encode(bytes.fromhex(info.sha256)).decode()
        headers = {
            "Content-Length": str(info.size),
            "X-Weir-SHA256": info.sha256,
            "Repr-Digest": f"sha-256=:{digest}:",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)
