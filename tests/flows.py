"""Flow specs the tests share."""

from __future__ import annotations

import asyncio
from typing import Any

from weir.client import Client
from weir_proto.events import FlowEvent, event_type

WAIT = 60.0
"""Seconds a test waits for a flow to end."""


def task(name: str, *cmd: str, depends: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "cmd": list(cmd) or ["true"], "depends": depends or [], **extra}


def diamond(flow_id: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "diamond",
        "tasks": [
            task("join", "true", depends=["left", "right"]),
            task("left", "true", depends=["root"]),
            task("right", "true", depends=["root"]),
            task("root", "true"),
        ],
    }
    if flow_id:
        spec["id"] = flow_id
    return spec


async def finish(client: Client, spec: dict[str, Any]) -> tuple[str, list[FlowEvent]]:
    """Submit, wait until the flow ends, return its id and its events."""
    flow_id = await client.submit(spec)
    await asyncio.wait_for(client.wait(flow_id), WAIT)
    return flow_id, [e async for e in client.events(flow_id)]


def types(events: list[FlowEvent]) -> list[str]:
    return [event_type(e) for e in events]
