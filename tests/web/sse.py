"""Reading Server-Sent Events the way a browser's EventSource does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Sse:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


async def read_sse(response: httpx.Response) -> AsyncIterator[Sse]:
    assert response.headers["content-type"].startswith("text/event-stream")
    event, data, event_id = "message", list[str](), None
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield Sse(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                event = value
            elif key == "data":
                data.append(value)
            elif key == "id":
                event_id = value
