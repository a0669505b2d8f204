"""The `web` scenario: weir-web and its UI under load, against the real services as processes.

- the page of a finished 10,000-task flow: seconds from navigation until its graph is drawn
  and it answers input, in Chromium (Debian's, driven by Playwright; skipped without it);
- 200 concurrent SSE followers of one flow: weir-web's RSS and CPU while they wait, and how
  long until every one of them has the flow's terminal event once it is cancelled;
- as many followers of the flow list's stream (`GET /api/v1/flows` as SSE): weir-web's RSS and
  CPU while they wait, and how long from a submit until every one has its change;
- `GET /api/v1/flows` (one page of 50) p50/p95 with many flows in the log (100,000 for the
  full run: `--web-flows 100000`), plain and with a `where` filter. The flows are seeded
  through the scheduler's batch submit (`Client.submit_many`, one write per SEED_BATCH) and
  measured once the scheduler has taken the last batch.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from weir.client import Client

from bench.chromium import CHROMIUM_ARGS, chromium_path
from bench.weirstack import WeirServices, fan, single_task

CHROMIUM = chromium_path("WEIR_BENCH_CHROMIUM")
LIST_SAMPLES = 50
IDLE_WINDOW_S = 5.0
SEED_BATCH = 1000
"""Flows per `submit_many` when seeding the log for `GET /flows`."""


async def _terminal(http: httpx.AsyncClient, flow_id: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            flow = (await http.get(f"/flows/{flow_id}")).json()
            if flow.get("finished_at"):
                return
            await asyncio.sleep(0.5)


_AUTH: dict[str, str] = {}
"""The dev stack's admin token as a header (set by `run`)."""


async def page_seconds(url: str, base: str, token: str) -> float | None:
    """Seconds until the page at `url` has drawn its graph and answers input (logged in with
    `token` first, as a person would)."""
    if not Path(CHROMIUM).exists():
        return None
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.request.post(f"{base}/api/v1/session", data={"token": token})
        started = time.monotonic()
        await page.goto(url)
        await page.locator(".graph.big canvas").wait_for(timeout=300_000)
        await page.locator("input.find").fill("t09999")
        await page.evaluate("() => new Promise(requestAnimationFrame)")
        seconds = time.monotonic() - started
        await browser.close()
    return seconds


async def _follow(base: str, flow_id: str, started: asyncio.Event) -> float:
    """Follows the flow's events; returns the monotonic time its terminal event arrived."""
    async with (
        httpx.AsyncClient(base_url=base, timeout=None, headers=_AUTH) as http,
        http.stream("GET", f"/api/v1/flows/{flow_id}/events") as response,
    ):
        started.set()
        async for line in response.aiter_lines():
            if line.startswith("event: flow_cancelled"):
                return time.monotonic()
    raise RuntimeError(f"the event stream of {flow_id} ended without its terminal event")


async def _idle_usage(web: psutil.Process, count: int, rss_before: int) -> dict[str, Any]:
    """weir-web's CPU over IDLE_WINDOW_S while `count` followers wait, and its RSS then."""
    cpu = web.cpu_times()
    await asyncio.sleep(IDLE_WINDOW_S)
    cpu_after = web.cpu_times()
    rss = web.memory_info().rss
    used = (cpu_after.user + cpu_after.system) - (cpu.user + cpu.system)
    return {
        "followers": count,
        "web_rss_mib": rss / 2**20,
        "web_rss_growth_mib": (rss - rss_before) / 2**20,
        "web_cpu_idle_percent": 100 * used / IDLE_WINDOW_S,
    }


async def followers(
    http: httpx.AsyncClient, base: str, web_pid: int, count: int, timeout: float
) -> dict[str, Any]:
    """`count` SSE followers of one waiting flow: weir-web's RSS and CPU, then fan-out."""
    spec = single_task(["true"])
    spec["delay"] = "1h"  # it waits, so its followers stay connected
    flow_id = (await http.post("/flows", json=spec)).json()["flow_id"]
    web = psutil.Process(web_pid)
    rss_before = web.memory_info().rss
    ready = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(_follow(base, flow_id, ready[i])) for i in range(count)]
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(e.wait() for e in ready))
    usage = await _idle_usage(web, count, rss_before)
    cancelled = time.monotonic()
    await http.post(f"/flows/{flow_id}/cancel", json={})
    async with asyncio.timeout(timeout):
        arrived = await asyncio.gather(*tasks)
    return {**usage, "cancel_to_all_followers_ms": (max(arrived) - cancelled) * 1000}


async def _follow_list(base: str, flow_ids: set[str], ready: asyncio.Event) -> float:
    """Follows the flow list's stream; returns the monotonic time a change of one of
    `flow_ids` arrived (the ids are filled in once every follower is ready)."""
    headers = {**_AUTH, "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=None, headers=headers) as http,
        http.stream("GET", "/api/v1/flows") as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("event: ready"):
                ready.set()
            elif line.startswith("data: ") and any(f in line for f in flow_ids):
                return time.monotonic()
    raise RuntimeError("the flow list's stream ended")


async def list_followers(
    http: httpx.AsyncClient, base: str, web_pid: int, count: int, timeout: float
) -> dict[str, Any]:
    """`count` followers of the flow list's stream: weir-web's RSS and CPU while they wait,
    then how long from a submit until every one has heard of the new flow."""
    web = psutil.Process(web_pid)
    rss_before = web.memory_info().rss
    watched: set[str] = set()
    ready = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(_follow_list(base, watched, e)) for e in ready]
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(e.wait() for e in ready))
    usage = await _idle_usage(web, count, rss_before)
    submitted = time.monotonic()
    watched.add((await http.post("/flows", json=single_task(["true"]))).json()["flow_id"])
    async with asyncio.timeout(timeout):
        arrived = await asyncio.gather(*tasks)
    return {**usage, "submit_to_all_followers_ms": (max(arrived) - submitted) * 1000}


async def seed_flows(
    svc: WeirServices, http: httpx.AsyncClient, flows: int, timeout: float
) -> float:
    """`flows` single-task flows in the log, through the batch submit; returns the seconds
    until the scheduler had taken them all (the last batch's flows finished)."""
    started = time.monotonic()
    last: list[str] = []
    async with await Client.connect(svc.nats_url, timeout=60.0) as client:
        for start in range(0, flows, SEED_BATCH):
            size = min(SEED_BATCH, flows - start)
            last = await client.submit_many([single_task(["true"]) for _ in range(size)])
    for flow_id in last[-10:]:
        await _terminal(http, flow_id, timeout)
    return time.monotonic() - started


async def list_latency(http: httpx.AsyncClient, params: dict[str, str]) -> dict[str, float]:
    samples = []
    for _ in range(LIST_SAMPLES):
        started = time.perf_counter()
        response = await http.get("/flows", params={"limit": "50", **params})
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    quantiles = statistics.quantiles(samples, n=20)
    return {"p50_ms": statistics.median(samples), "p95_ms": quantiles[18]}


async def run(svc: WeirServices, flows: int, follower_count: int, timeout: float) -> dict[str, Any]:
    stack = svc.stack
    assert stack.web is not None
    base = stack.web_url
    _AUTH["Authorization"] = f"Bearer {stack.web_token}"
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=60, headers=_AUTH) as http:
        big = fan(10_000, ["true"])
        big_id = (await http.post("/flows", json=big)).json()["flow_id"]
        await _terminal(http, big_id, timeout)
        page_s = await page_seconds(f"{base}/flows/{big_id}", base, stack.web_token)
        follow = await followers(http, base, stack.web.pid, follower_count, timeout)
        list_follow = await list_followers(http, base, stack.web.pid, follower_count, timeout)
        seed_s = await seed_flows(svc, http, flows, timeout)
        listed = await list_latency(http, {})
        filtered = await list_latency(http, {"where": "status=succeeded and name=single"})
    return {
        "page_10000_tasks_s": page_s,
        "sse": follow,
        "list_sse": list_follow,
        "list_flows": flows,
        "list_seed_s": seed_s,
        "list": listed,
        "list_where": filtered,
    }
