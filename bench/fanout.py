"""The fan-out scenario: one flow whose middle task maps over a list of `items` numbers a
first task writes, on the local executor (the list is a real artifact the scheduler reads).

Measured: the whole flow's time, the time from the list's task succeeding to the expansion
being recorded (`task_expanded`: reading the list and planning every instance), the time
per instance, the event log's size per instance and the processes' peak RSS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from weir.client import Client

from bench.weirstack import WeirServices, flow_seconds, outcome, wait_terminal

EXTRA_TASKS = 3
"""The list's task, the mapped task itself and the task after it."""


def map_spec(items: int) -> dict[str, Any]:
    write = f'seq 0 {items - 1} | paste -sd, - | sed "s/.*/[&]/" > items.json'
    return {
        "name": "fanout",
        "tasks": [
            {
                "name": "list-items",
                "cmd": ["sh", "-c", write if items else "echo [] > items.json"],
                "outputs": [{"name": "items", "path": "items.json"}],
            },
            {
                "name": "each",
                "cmd": ["true", "{{ item }}"],
                "depends": ["list-items"],
                "map": {"over": "items"},
            },
            {"name": "after", "cmd": ["true"], "depends": ["each"]},
        ],
    }


async def run_map(svc: WeirServices, items: int, timeout: float) -> dict[str, Any]:
    flow_id = f"fanout-{uuid.uuid4().hex[:12]}"
    async with await Client.connect(svc.nats_url, timeout=30.0) as client:
        t0 = time.time()
        await client.submit({"id": flow_id, **map_spec(items)})
    _, in_time = await wait_terminal(svc.database_url, 1, timeout, flow_id)
    svc.rss.sample()
    result = await outcome(svc.database_url)
    expand_s = await _expansion_seconds(svc.database_url, flow_id)
    total = (result["last_terminal_epoch"] or time.time()) - t0
    return {
        "items": items,
        "total_s": total,
        "per_item_ms": total * 1000.0 / max(items, 1),
        "expand_s": expand_s,
        "succeeded": result["statuses"].get("succeeded", 0) == 1,
        "completed_in_time": in_time,
        "event_rows": result["event_rows"],
        "event_bytes_per_item": result["event_bytes"] / max(items, 1),
        "rss_peak_mib": svc.rss.peak_mib(),
    }


async def _expansion_seconds(url: str, flow_id: str) -> float | None:
    """From the list's task succeeding to `task_expanded` being recorded."""
    return await flow_seconds(url, "expansion_seconds", flow_id)


def run(svc: WeirServices, items: int, timeout: float) -> dict[str, Any]:
    return asyncio.run(run_map(svc, items, timeout))
