"""weir's scenarios: throughput, latency on an idle system, and scale (planning, time, memory,
event-log cost) — each against the real services as separate processes."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from weir.client import Client
from weir_proto.spec import MAX_TASKS_DEFAULT
from weir_scheduler import planner

from bench import artifacts as artifact_transfer
from bench import fanout as map_scenario
from bench import web as web_load
from bench.stats import growth_slope, latency_summary
from bench.weirstack import (
    MIB,
    Cluster,
    WeirServices,
    chain,
    fan,
    first_started_epoch,
    independent,
    outcome,
    single_task,
    step_latencies_ms,
    task_name,
    wait_terminal,
    weir_services,
)

SUBMIT_WINDOW = 256
"""Submits in flight at once from the benchmark's client, one message per flow."""
SUBMIT_BATCH = 1000
"""Flows per `Client.submit_many` call when a client submits in batches."""
SOAK_TICK = 0.1
"""A soak submits its steady rate in batches this many seconds apart."""
SOAK_WARMUP = 0.2
"""The first fifth of a soak is warm-up: RSS growth is measured from its end."""
LOCAL_CMD = ["true"]
NOOP_CMD = ["true"]  # the noop executor never runs it


@dataclass
class Context:
    cluster: Cluster
    workdir: Path
    concurrency: int
    log_level: str
    timeout: float
    profile_dir: Path | None = None

    def services(
        self,
        executor: str,
        profile: str | None = None,
        schedulers: int = 1,
        runners: int = 1,
        max_tasks: int = MAX_TASKS_DEFAULT,
    ) -> Any:
        target = None
        if self.profile_dir is not None and profile is not None:
            target = self.profile_dir / profile
        return weir_services(
            self.cluster,
            self.workdir,
            executor,
            self.concurrency,
            self.log_level,
            profile_to=target,
            schedulers=schedulers,
            runners=runners,
            max_tasks=max_tasks,
        )


def _log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _flow_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _submit_all(client: Client, specs: int, make: Callable[[int], dict[str, Any]]) -> float:
    """Submit `specs` flows SUBMIT_WINDOW at a time; returns when the last is acknowledged."""
    for start in range(0, specs, SUBMIT_WINDOW):
        batch = [make(i) for i in range(start, min(start + SUBMIT_WINDOW, specs))]
        await asyncio.gather(*(client.submit(spec) for spec in batch))
    return time.time()


async def _submit_batches(
    client: Client, specs: int, make: Callable[[int], dict[str, Any]]
) -> float:
    """Submit `specs` flows SUBMIT_BATCH at a time with `submit_many`; returns when the last
    batch is acknowledged."""
    for start in range(0, specs, SUBMIT_BATCH):
        await client.submit_many(make(i) for i in range(start, min(start + SUBMIT_BATCH, specs)))
    return time.time()


async def _run_flows(
    svc: WeirServices,
    count: int,
    make: Callable[[int], dict[str, Any]],
    tasks: int,
    timeout: float,
    batched: bool = False,
) -> dict[str, Any]:
    submit = _submit_batches if batched else _submit_all
    async with await Client.connect(svc.nats_url, timeout=30.0) as client:
        cpu_before = svc.rss.cpu_seconds()
        started = time.time()
        acked = await submit(client, count, make)
    done, in_time = await wait_terminal(svc.database_url, count, timeout)
    cpu_after = svc.rss.cpu_seconds()
    svc.rss.sample()
    result = await outcome(svc.database_url)
    last = result["last_terminal_epoch"] or time.time()
    elapsed = max(last - started, 1e-9)
    succeeded = int(result["statuses"].get("succeeded", 0))
    return {
        "flows": count,
        "tasks": tasks,
        "submit_s": acked - started,
        "submits_per_s": count / max(acked - started, 1e-9),
        "elapsed_s": elapsed,
        "tasks_per_s": tasks / elapsed if in_time else tasks * done / count / elapsed,
        "flows_terminal": done,
        "flows_succeeded": succeeded,
        "completed_in_time": in_time,
        "rss_peak_mib": svc.rss.peak_mib(),
        "cpu_ms_per_task": {
            kind: round((cpu_after[kind] - cpu_before.get(kind, 0.0)) * 1000 / max(tasks, 1), 3)
            for kind in cpu_after
        },
    }


def _rate_note(result: dict[str, Any]) -> str:
    """`N tasks/s in S s; CPU ms/task scheduler X, runner Y` for the log."""
    cpu = result.get("cpu_ms_per_task") or {}
    per_task = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items()))
    rate = f"{result['tasks_per_s']:.0f} tasks/s in {result['elapsed_s']:.1f}s"
    return f"    {rate}; CPU ms/task {per_task}"


def _copier(spec: dict[str, Any]) -> Callable[[int], dict[str, Any]]:
    return lambda _i: dict(spec)


def throughput(ctx: Context, flows: int, big: int, executors: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for executor in executors:
        cmd = LOCAL_CMD if executor == "local" else NOOP_CMD
        spec = single_task(cmd)
        _log(f"throughput: {flows:,} single-task flows, executor={executor}")
        with ctx.services(executor, profile=f"throughput-{executor}") as svc:
            many = asyncio.run(_run_flows(svc, flows, _copier(spec), flows, ctx.timeout))
        _log(_rate_note(many))
        _log(f"throughput: {flows:,} single-task flows in batches of {SUBMIT_BATCH:,}")
        with ctx.services(executor) as svc:
            batched = asyncio.run(
                _run_flows(svc, flows, _copier(spec), flows, ctx.timeout, batched=True)
            )
        _log(_rate_note(batched))
        big_spec = independent(big, cmd)
        _log(f"throughput: one flow of {big:,} independent tasks, executor={executor}")
        with ctx.services(executor) as svc:
            one = asyncio.run(_run_flows(svc, 1, _copier(big_spec), big, ctx.timeout))
        _log(_rate_note(one))
        out[executor] = {
            "single_task_flows": many,
            "single_task_flows_batched": batched,
            "one_wide_flow": one,
        }
    return out


async def _latency(svc: WeirServices, samples: int, chain_len: int, timeout: float) -> Any:
    to_start: list[float] = []
    to_ack: list[float] = []
    async with await Client.connect(svc.nats_url, timeout=30.0) as client:
        for _ in range(samples):
            flow_id = _flow_id("lat")
            t0 = time.time()
            await client.submit({"id": flow_id, **single_task(NOOP_CMD)})
            to_ack.append((time.time() - t0) * 1000.0)
            await asyncio.wait_for(client.wait(flow_id), 30.0)
            started = await first_started_epoch(svc.database_url, flow_id)
            if started is not None:
                to_start.append((started - t0) * 1000.0)
            await asyncio.sleep(0.05)  # idle between samples
        flow_id = _flow_id("chain")
        spec = chain(chain_len, NOOP_CMD)
        t0 = time.time()
        await client.submit({"id": flow_id, **spec})
    _, in_time = await wait_terminal(svc.database_url, 1, timeout, flow_id)
    order = [task_name(i) for i in range(chain_len)]
    steps = await step_latencies_ms(svc.database_url, flow_id, order)
    chain_s = ((await outcome(svc.database_url))["last_terminal_epoch"] or time.time()) - t0
    return {
        "submit_to_start_ms": latency_summary(to_start),
        "submit_ack_ms": latency_summary(to_ack),
        "step_to_step_ms": latency_summary(steps),
        "chain_tasks": chain_len,
        "chain_total_s": chain_s,
        "chain_completed_in_time": in_time,
    }


def latency(ctx: Context, samples: int, chain_len: int) -> dict[str, Any]:
    _log(f"latency: {samples} single-task submits one at a time, then a {chain_len}-task chain")
    with ctx.services("noop", profile="latency") as svc:
        result: dict[str, Any] = asyncio.run(_latency(svc, samples, chain_len, ctx.timeout))
    _log(
        f"    submit->start p50 {result['submit_to_start_ms'].get('p50', float('nan')):.1f} ms, "
        f"step p50 {result['step_to_step_ms'].get('p50', float('nan')):.1f} ms"
    )
    return result


def planning_seconds(spec: dict[str, Any], rounds: int = 3) -> float:
    """Median wall time of planner.decode + planner.plan on the encoded spec, in-process."""
    data = msgspec.json.encode(spec)
    limits = planner.Limits(max_tasks=MAX_TASKS_DEFAULT, max_submit_bytes=8 * 2**20)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        planner.plan(planner.decode(data, limits), limits)
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


async def _one(svc: WeirServices, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    flow_id = _flow_id(spec["name"].split("-")[0])
    async with await Client.connect(svc.nats_url, timeout=30.0) as client:
        t0 = time.time()
        await client.submit({"id": flow_id, **spec})
    _, in_time = await wait_terminal(svc.database_url, 1, timeout, flow_id)
    svc.rss.sample()
    result = await outcome(svc.database_url)
    tasks = len(spec["tasks"])
    total = (result["last_terminal_epoch"] or time.time()) - t0
    return {
        "tasks": tasks,
        "total_s": total,
        "per_task_ms": total * 1000.0 / tasks,
        "succeeded": result["statuses"].get("succeeded", 0) == 1,
        "completed_in_time": in_time,
        "event_rows": result["event_rows"],
        "event_rows_per_task": result["event_rows"] / tasks,
        "event_bytes_per_task": result["event_bytes"] / tasks,
        "rss_peak_mib": svc.rss.peak_mib(),
    }


def scale(ctx: Context, fan_sizes: list[int], chain_sizes: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape, builder, sizes in (("fan", fan, fan_sizes), ("chain", chain, chain_sizes)):
        for size in sizes:
            spec = builder(size, NOOP_CMD)
            plan_s = planning_seconds(spec)
            _log(f"scale: {shape} of {size:,} tasks (planning {plan_s * 1000:.0f} ms)")
            with ctx.services("noop", profile=f"scale-{shape}-{size}") as svc:
                run = asyncio.run(_one(svc, spec, ctx.timeout))
            run["planning_s"] = plan_s
            _log(
                f"    total {run['total_s']:.1f}s, scheduler peak "
                f"{run['rss_peak_mib'].get('scheduler', 0):.0f} MiB"
            )
            out[f"{shape}_{size}"] = run
    return out


def fanout(ctx: Context, items: int) -> dict[str, Any]:
    _log(f"fanout: a task mapped over {items:,} items (local executor)")
    limit = max(MAX_TASKS_DEFAULT, items + map_scenario.EXTRA_TASKS)
    with ctx.services("local", profile="fanout", max_tasks=limit) as svc:
        result = map_scenario.run(svc, items, ctx.timeout)
    _log(
        f"    total {result['total_s']:.1f}s, expansion {result['expand_s'] or 0:.2f}s, "
        f"{result['per_item_ms']:.1f} ms per item"
    )
    return result


def artifacts(ctx: Context, size_mib: int) -> dict[str, Any]:
    _log(f"artifacts: {size_mib} MiB up and down through `python -m weir_runner.artifacts`")
    result = artifact_transfer.transfer(ctx.workdir, size_mib, ctx.timeout)
    up, down = result["upload"], result["download"]
    _log(
        f"    upload {up['mib_per_s']:.0f} MiB/s, peak RSS {up['rss_peak_mib']:.1f} MiB; "
        f"download {down['mib_per_s']:.0f} MiB/s, peak RSS {down['rss_peak_mib']:.1f} MiB"
    )
    return result


def replicas(ctx: Context, flows: int) -> dict[str, Any]:
    """Single-task flows (noop, submitted in batches) through one scheduler and one runner,
    then through two of each: what a second replica of each adds on this machine."""
    spec = single_task(NOOP_CMD)
    out: dict[str, Any] = {}
    for count in (1, 2):
        _log(f"replicas: {flows:,} single-task flows, {count} scheduler(s) + {count} runner(s)")
        with ctx.services("noop", schedulers=count, runners=count) as svc:
            run = asyncio.run(
                _run_flows(svc, flows, _copier(spec), flows, ctx.timeout, batched=True)
            )
        _log(f"    {run['tasks_per_s']:.0f} tasks/s in {run['elapsed_s']:.1f}s")
        out[f"x{count}"] = run
    out["cpu_count"] = float(os.cpu_count() or 1)
    return out


def rss_growth(samples: list[tuple[float, int]]) -> dict[str, float]:
    """RSS after warm-up (median of the 2nd fifth) against the end (median of the last
    fifth), with the least-squares slope over the samples after warm-up."""
    if len(samples) < 10:
        return {}
    fifth = len(samples) // 5
    start = statistics.median(rss for _, rss in samples[fifth : 2 * fifth]) / MIB
    end = statistics.median(rss for _, rss in samples[-fifth:]) / MIB
    after = samples[fifth:]
    slope = growth_slope([t for t, _ in after], [rss / MIB for _, rss in after])
    return {
        "start_mib": round(start, 2),
        "end_mib": round(end, 2),
        "growth_mib": round(end - start, 2),
        "end_over_start": round(end / start, 4) if start else float("nan"),
        "slope_mib_per_min": round(slope * 60.0, 3) if slope is not None else float("nan"),
        "peak_mib": round(max(rss for _, rss in samples) / MIB, 2),
    }


async def _soak(svc: WeirServices, seconds: float, rate: float, timeout: float) -> dict[str, Any]:
    spec = single_task(NOOP_CMD)
    per_tick = max(1, round(rate * SOAK_TICK))
    submitted = 0
    async with await Client.connect(svc.nats_url, timeout=30.0) as client:
        t0 = time.monotonic()
        while (now := time.monotonic() - t0) < seconds:
            due = min(int(now * rate) + per_tick, int(seconds * rate)) - submitted
            if due > 0:
                await client.submit_many(dict(spec) for _ in range(due))
                submitted += due
            await asyncio.sleep(max(0.0, SOAK_TICK - (time.monotonic() - t0 - now)))
        submit_s = time.monotonic() - t0
    done, in_time = await wait_terminal(svc.database_url, submitted, timeout)
    lag_s = time.monotonic() - t0 - submit_s
    svc.rss.sample()
    result = await outcome(svc.database_url)
    warmup = seconds * SOAK_WARMUP
    return {
        "seconds": seconds,
        "rate_per_s": rate,
        "flows": submitted,
        "flows_terminal": done,
        "completed_in_time": in_time,
        "drain_after_last_submit_s": lag_s,
        "event_rows_per_task": result["event_rows"] / max(result["tasks"], 1),
        "event_bytes_per_task": result["event_bytes"] / max(result["tasks"], 1),
        "rss": {
            name: {**rss_growth(svc.rss.since(name, warmup)), "warmup_s": warmup}
            for name in ("scheduler", "runner")
        },
    }


def soak(ctx: Context, seconds: float, rate: float) -> dict[str, Any]:
    """A steady stream of single-task flows (noop) for `seconds`: RSS of the scheduler and
    the runner over the run, and the event log's bytes per task at the end."""
    _log(f"soak: {rate:,.0f} single-task flows/s for {seconds:,.0f} s")
    with ctx.services("noop") as svc:
        result: dict[str, Any] = asyncio.run(_soak(svc, seconds, rate, ctx.timeout))
    for name, rss in result["rss"].items():
        _log(
            f"    {name} RSS {rss.get('start_mib', float('nan')):.1f} -> "
            f"{rss.get('end_mib', float('nan')):.1f} MiB; "
            f"{result['event_bytes_per_task']:,.0f} log bytes/task"
        )
    return result


def web(ctx: Context, flows: int, followers: int) -> dict[str, Any]:
    _log(
        f"web: a 10,000-task flow's page, {followers} SSE followers, GET /flows over "
        f"{flows:,} flows"
    )
    with ctx.services("noop", profile="web") as svc:
        svc.stack.start_web()
        assert svc.stack.web is not None
        svc.rss.watch("web", svc.stack.web.pid)
        result = asyncio.run(web_load.run(svc, flows, followers, ctx.timeout))
        result["rss_peak_mib"] = svc.rss.peak_mib()
    page = result["page_10000_tasks_s"]
    sse = result["sse"]
    _log(
        f"    page {'n/a (no chromium)' if page is None else f'{page:.1f}s'}; "
        f"{followers} followers: weir-web {sse['web_rss_mib']:.0f} MiB, "
        f"{sse['web_cpu_idle_percent']:.1f}% CPU, cancel seen by all in "
        f"{sse['cancel_to_all_followers_ms']:.0f} ms; GET /flows p50 "
        f"{result['list']['p50_ms']:.1f} ms, with where {result['list_where']['p50_ms']:.1f} ms"
    )
    return result
