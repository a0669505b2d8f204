"""`/flows/{id}/tasks/{task}/logs`: a task attempt's log as text, or as Server-Sent Events
(one per chunk, named by its stream, then `end`) when following.

The text form is the bytes as the task wrote them. In the event form each chunk's data is a
JSON string: SSE ends a data line at `\\r` as well as at `\\n`, so a progress bar's bare `\\r`
sent as it is would cut the line, and JSON keeps it (and every other character) on one line.
Each stream has its own incremental decoder, so a character the runner's 32 KiB chunks cut in
two arrives whole in the next event."""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from weir_proto.ids import is_task_name

from weir_web.config import Role
from weir_web.endpoints import Endpoints, route
from weir_web.params import bool_query, flow_id_of, int_query, label_of
from weir_web.sse import KEEPALIVE_FRAME, KEEPALIVE_SECONDS, sse_frame, sse_response, with_keepalive


class LogRoutes(Endpoints):
    @route("GET", "/flows/{flow_id}/tasks/{task}/logs", Role.viewer)
    async def logs(self, request: Request) -> Response:
        flow_id = flow_id_of(request)
        task: str = request.path_params["task"]
        if not is_task_name(task):  # a task, or an instance NAME[i] of a mapped one
            label_of(request, "task", "task name")
        attempt = int_query(request, "attempt", None, 1, 1_000_000)
        follow = bool_query(request, "follow")
        attempt = await self.client.attempt_of(flow_id, task, attempt)
        chunks = self.client.logs(flow_id, task, attempt, follow=follow)
        if not follow:
            return StreamingResponse(
                (data async for _, data in chunks), media_type="text/plain; charset=utf-8"
            )
        return sse_response(log_frames(chunks))


async def log_frames(chunks: AsyncIterator[tuple[str, bytes]]) -> AsyncIterator[bytes]:
    decoders: dict[str, codecs.IncrementalDecoder] = {}
    async for item in with_keepalive(chunks, KEEPALIVE_SECONDS):
        if item is None:
            yield KEEPALIVE_FRAME
            continue
        stream, data = item
        if stream not in decoders:
            decoders[stream] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = decoders[stream].decode(data)
        if text:
            yield sse_frame(json.dumps(text, ensure_ascii=False), stream)
    for stream, decoder in decoders.items():
        if rest := decoder.decode(b"", final=True):  # a log cut inside its last character
            yield sse_frame(json.dumps(rest, ensure_ascii=False), stream)
    yield sse_frame('""', "end")
