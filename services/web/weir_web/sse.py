"""Server-Sent Events: frames, keepalives on quiet streams, and the response that carries them."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from starlette.responses import StreamingResponse

KEEPALIVE_SECONDS = 15.0
"""An SSE comment this often keeps proxies from closing a quiet stream."""
KEEPALIVE_FRAME = b": keepalive\n\n"
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

_T = TypeVar("_T")
_LINE_END = re.compile(r"\r\n|\r|\n")


async def with_keepalive(source: AsyncIterator[_T], every: float) -> AsyncIterator[_T | None]:
    """The items of `source`, and None whenever it has been quiet for `every` seconds.

    `source` runs in its own task so that waiting can time out without closing it."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=16)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(("item", item))
            await queue.put(("end", None))
        except Exception as exc:
            await queue.put(("error", exc))

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), every)
            except TimeoutError:
                yield None
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def sse_frame(data: str, event: str | None = None, event_id: int | None = None) -> bytes:
    """One event. SSE ends a line at `\\r`, `\\n` or `\\r\\n`, so each of them in `data` becomes
    its own `data:` line (a client rejoins them with `\\n`): a bare `\\r` cannot cut the event,
    but does arrive as `\\n`; text that must keep it is sent as JSON (see routes/logs.py)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in _LINE_END.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def sse_response(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
