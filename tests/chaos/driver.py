"""The chaos driver: two schedulers and two runners as real processes, a stream of flows, and
faults at random (seeded) moments: kill -9 of a scheduler or a runner, a restart of
nats-server (same store) or of Postgres (same data). Meanwhile it steps in on flows as an
operator would: it pauses some and resumes them a moment later, retries (`weir retry`) the
task of a flow that fails until it is retried, and moves the start of each flow submitted to
start later close, with new params (`weir update`). Then the checker reads what happened.

Replay a run with `WEIR_CHAOS_SEED=<seed>` (printed at the start and in the summary).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from weir.devstack import Stack
from weir.jetstream import close, connect
from weir_proto import subjects
from weir_proto.errors import ErrorCode
from weir_proto.status import TERMINAL_FLOW_STATUSES

from tests.chaos.checker import Verdict, check
from tests.chaos.workload import STEPLESS_SHAPES, flow_spec, invalid_spec, update_for

CHAOS_ENV = {
    "WEIR_DISPATCH_ACK_WAIT": "2",
    "WEIR_SCHEDULER_ACK_WAIT": "2",
    "WEIR_LEASE": "5",
    "WEIR_HEARTBEAT_INTERVAL": "0.5",
    "WEIR_SHUTDOWN_GRACE": "2",
    "WEIR_RUNNER_CONCURRENCY": "6",
    "WEIR_LOG_LEVEL": "INFO",
}
REPLICAS = 2
FAULTS = ("kill_scheduler", "kill_runner", "restart_nats", "restart_postgres")
SUBMIT_TIMEOUT = 3.0
SUBMIT_TRIES = 20
SETTLE_POLL = 0.5
STEP_TIMEOUT = 5.0
"""How long one pause, resume or retry request waits for its answer before asking again."""
STEP_POLL = 0.5
FIRST_FLOWS: tuple[dict[str, Any], ...] = (
    {"shape": "single", "fixable": True},
    {"shape": "map", "fixable": False},
    {"shape": "gates"},
    {"shape": "scheduled"},
)
UPDATE_AFTER = (0.2, 1.0)
"""Seconds after its submit the driver updates a flow submitted to start later."""
UPDATE_START_IN = (1.0, 3.0)
"""Seconds from the update's first sending to the new start it sets."""
RSS_SAMPLE_EVERY = 5.0
DATABASE_TROUBLE = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions._base.InternalClientError,
)
"""What the driver's own reads of the log may raise while Postgres restarts (a connection
made as it goes down can be left mid-handshake): it asks again on its next round."""


def seed_from_env() -> int:
    raw = os.environ.get("WEIR_CHAOS_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)


@dataclass
class Plan:
    seed: int
    flows: int
    """Flows to submit, spread over `duration` seconds (the soak keeps going until then)."""
    duration: float
    fault_gap: tuple[float, float] = (1.5, 3.5)
    settle_timeout: float = 90.0
    api_share: float = 0.25
    """Part of the submits sent to `weir.api.submit` instead of `weir.cmd.submit`."""
    invalid_share: float = 0.05
    kill_replicas: tuple[int, ...] = (0, 1)
    """Replicas the driver may kill; the soak spares replica 0 to watch its memory throughout."""
    pause_share: float = 0.15
    """Part of the flows paused shortly after their submit and resumed a moment later."""


@dataclass
class Run:
    plan: Plan
    acked: dict[str, bool] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    runner_kills: list[float] = field(default_factory=list)
    unacked: int = 0
    rss: dict[str, list[int]] = field(default_factory=dict)
    stepped: list[tuple[str, str, str | None]] = field(default_factory=list)
    """(flow, pause|resume|retry|update, task) of every step the API said it made."""
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The params of each update the API said it made, by flow."""
    verdict: Verdict | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        v = self.verdict
        assert v is not None
        faults = ", ".join(f"{k}={n}" for k, n in sorted(self.faults.items()))
        statuses = ", ".join(f"{k}={n}" for k, n in sorted(v.statuses.items()))
        steps = Counter(kind for _, kind, _ in self.stepped)
        return (
            f"chaos seed={self.plan.seed} (replay: WEIR_CHAOS_SEED={self.plan.seed}) "
            f"flows={v.flows} acked_submits={len(self.acked)} unacked_submits={self.unacked} "
            f"events={v.events} executions={v.executions} rerun_attempts={v.rerun_attempts} "
            f"kills={self.faults['kill_scheduler'] + self.faults['kill_runner']} "
            f"restarts={self.faults['restart_nats'] + self.faults['restart_postgres']} "
            f"[{faults}] statuses[{statuses}] stepped[pause={steps['pause']} "
            f"resume={steps['resume']} retry={steps['retry']} update={steps['update']}] "
            f"instances={v.instances} gates={v.gates} (disturbed {v.disturbed}) "
            f"updated={v.updated} "
            f"violations={len(v.violations)} "
            f"in {self.seconds:.1f}s"
        )


def start_stack(root: Path) -> Stack:
    stack = Stack(root, env=dict(CHAOS_ENV))
    stack.start_infra()
    stack.start_services(
        *(("scheduler", replica) for replica in range(REPLICAS)),
        *(("runner", replica) for replica in range(REPLICAS)),
    )
    return stack


def rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Driver:
    def __init__(self, stack: Stack, plan: Plan, trail: Path) -> None:
        self.stack = stack
        self.plan = plan
        self.trail = trail
        self.run = Run(plan)
        self.rng = random.Random(plan.seed)
        # Separate streams of randomness so faults replay even if the workload changes.
        self.fault_rng = random.Random(plan.seed * 7 + 1)
        self.step_rng = random.Random(plan.seed * 13 + 5)
        self.stepping: list[asyncio.Task[None]] = []
        self.paused: set[str] = set()
        self.submitted = asyncio.Event()
        self.fixable: dict[str, str] = {}
        """flow -> its task that fails until retried; dropped once handled."""

    async def go(self) -> Run:
        started = time.monotonic()
        self.trail.touch()
        nc = await connect(self.stack.nats_url, "weir-chaos-driver")
        try:
            stop = asyncio.Event()
            faults = asyncio.create_task(self._faults(stop))
            sampler = asyncio.create_task(self._sample_rss(stop))
            retries = asyncio.create_task(self._retry_failed(nc))
            try:
                await self._submit_all(nc)
                self.submitted.set()
                # Keep injecting faults for the rest of the planned duration (the soak).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(faults),
                        max(0.0, started + self.plan.duration - time.monotonic()),
                    )
            finally:
                stop.set()
                await faults
                await sampler
            await asyncio.gather(*self.stepping)
            with contextlib.suppress(TimeoutError):  # the checker tells what is left
                await asyncio.wait_for(retries, self.plan.settle_timeout)
            await self._settle(nc)
        finally:
            await close(nc)
        self.run.verdict = await check(
            self.stack.database_url,
            self.stack.nats_url,
            self.trail,
            self.run.acked,
            self.run.runner_kills,
            self.run.stepped,
            self.run.updates,
        )
        self.run.seconds = time.monotonic() - started
        return self.run

    async def _submit_all(self, nc: NATS) -> None:
        js = nc.jetstream()
        gap = self.plan.duration * 0.6 / max(self.plan.flows, 1)
        for n in range(self.plan.flows):
            flow_id = f"chaos-{self.plan.seed % 100000}-{n}"
            invalid = n >= len(FIRST_FLOWS) and self.rng.random() < self.plan.invalid_share
            fixable, shape = None, "invalid"
            if invalid:
                spec = invalid_spec(flow_id)
            else:
                # The first two flows surely step in: a paused single task that fails until
                # retried, and a paused map; the rest at random.
                forced = FIRST_FLOWS[n] if n < len(FIRST_FLOWS) else {}
                workload = flow_spec(flow_id, self.trail, self.rng, **forced)
                spec, fixable, shape = workload.spec, workload.fixable, workload.shape
            payload = msgspec.json.encode(spec)
            via_api = self.rng.random() < self.plan.api_share
            if await self._submit(nc, js, flow_id, payload, via_api):
                self.run.acked[flow_id] = invalid
                if fixable is not None:
                    self.fixable[flow_id] = fixable
                pause = n < 2 or self.step_rng.random() < self.plan.pause_share
                if shape == "scheduled":
                    self.stepping.append(asyncio.create_task(self._update(nc, flow_id, n)))
                elif not invalid and shape not in STEPLESS_SHAPES and pause:
                    delay = 0.0 if n < 2 else self.step_rng.uniform(0.0, 1.0)
                    self.stepping.append(
                        asyncio.create_task(self._pause_and_resume(nc, flow_id, delay))
                    )
            else:
                self.run.unacked += 1
            await asyncio.sleep(self.rng.uniform(0, 2 * gap))

    async def _submit(
        self, nc: NATS, js: JetStreamContext, flow_id: str, payload: bytes, api: bool
    ) -> bool:
        """Submit until acknowledged (the same id makes a retry harmless); False if never."""
        for _ in range(SUBMIT_TRIES):
            try:
                if api:
                    reply = msgspec.json.decode(
                        (
                            await nc.request(subjects.API_SUBMIT, payload, timeout=SUBMIT_TIMEOUT)
                        ).data
                    )
                    error = reply.get("error")
                    if error is None or error.get("code") == ErrorCode.INVALID_FLOW:
                        return True
                else:
                    await js.publish(
                        subjects.SUBMIT,
                        payload,
                        timeout=SUBMIT_TIMEOUT,
                        headers={"Nats-Msg-Id": flow_id},
                    )
                    return True
            except Exception:
                pass
            await asyncio.sleep(0.5)
        return False

    async def _request(self, nc: NATS, subject: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Ask until an answer comes (an error answer included, but not_found: the submit
        may not have been taken in yet); None if none ever does."""
        reply: dict[str, Any] | None = None
        for _ in range(SUBMIT_TRIES):
            with contextlib.suppress(Exception):
                msg = await nc.request(subject, msgspec.json.encode(body), timeout=STEP_TIMEOUT)
                reply = msgspec.json.decode(msg.data)
                if ((reply or {}).get("error") or {}).get("code") != ErrorCode.NOT_FOUND:
                    return reply
            await asyncio.sleep(0.5)
        return reply

    def _stepped(
        self, flow_id: str, kind: str, reply: dict[str, Any] | None, task: str | None = None
    ) -> None:
        """Note a step the API answered it made (not one it refused or found made already)."""
        result = (reply or {}).get("result")
        if isinstance(result, dict) and not result.get("already"):
            self.run.stepped.append((flow_id, kind, task))

    async def _pause_and_resume(self, nc: NATS, flow_id: str, delay: float) -> None:
        """Pause the flow `delay` seconds after its submit, resume it a moment later (its
        running attempts finish meanwhile; faults keep coming)."""
        await asyncio.sleep(delay)
        self.paused.add(flow_id)
        reply = await self._request(nc, subjects.API_PAUSE, {"flow_id": flow_id, "reason": "chaos"})
        self._stepped(flow_id, "pause", reply)
        await asyncio.sleep(self.step_rng.uniform(0.3, 2.0))
        self._stepped(
            flow_id, "resume", await self._request(nc, subjects.API_RESUME, {"flow_id": flow_id})
        )

    async def _update(self, nc: NATS, flow_id: str, n: int) -> None:
        """Move the start of a flow submitted to start later close, with new params. The
        same request is asked again until answered: once made, a second one changes nothing
        and is refused, and the log tells what was made."""
        await asyncio.sleep(self.step_rng.uniform(*UPDATE_AFTER))
        start = datetime.now(UTC) + timedelta(seconds=self.step_rng.uniform(*UPDATE_START_IN))
        params = update_for(n)
        body = {"flow_id": flow_id, "scheduled_at": start.isoformat(), "params": params}
        reply = await self._request(nc, subjects.API_UPDATE, body)
        self._stepped(flow_id, "update", reply)
        if isinstance((reply or {}).get("result"), dict):
            self.run.updates[flow_id] = params

    async def _retry_failed(self, nc: NATS) -> None:
        """Once a flow with a task that fails until retried has failed, retry that task,
        once: a retry whose answer was lost is not sent again if the log holds it."""
        while not (self.submitted.is_set() and not self.fixable):
            await asyncio.sleep(STEP_POLL)
            with contextlib.suppress(*DATABASE_TROUBLE):
                conn = await asyncpg.connect(self.stack.database_url)
                try:
                    rows = await conn.fetch(
                        "SELECT id, status FROM flows WHERE id = ANY($1::text[])",
                        list(self.fixable),
                    )
                    for row in rows:
                        flow_id, status = row["id"], row["status"]
                        if status in ("succeeded", "cancelled", "rejected"):
                            self.fixable.pop(flow_id)  # nothing to retry
                        elif status == "failed":
                            await self._retry(nc, conn, flow_id, self.fixable.pop(flow_id))
                finally:
                    await conn.close()

    async def _retry(self, nc: NATS, conn: asyncpg.Connection, flow_id: str, task: str) -> None:
        body = {"flow_id": flow_id, "task": task}
        for _ in range(SUBMIT_TRIES):
            with contextlib.suppress(Exception):
                msg = await nc.request(
                    subjects.API_RETRY, msgspec.json.encode(body), timeout=STEP_TIMEOUT
                )
                self._stepped(flow_id, "retry", msgspec.json.decode(msg.data), task)
                return
            with contextlib.suppress(*DATABASE_TROUBLE):
                retried = await conn.fetchval(
                    "SELECT count(*) FROM events WHERE flow_id = $1 AND type = 'task_retried'",
                    flow_id,
                )
                if retried:
                    return  # the answer was lost, the retry was not
            await asyncio.sleep(0.5)

    async def _faults(self, stop: asyncio.Event) -> None:
        rng = self.fault_rng
        order = list(FAULTS)
        rng.shuffle(order)  # every kind at least once, first
        n = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(*self.plan.fault_gap))
            if stop.is_set():
                return
            fault = order[n] if n < len(order) else rng.choice(FAULTS)
            n += 1
            replica = rng.choice(self.plan.kill_replicas)
            down = rng.uniform(0.1, 1.0)
            await self._inject(fault, replica, down)

    async def _inject(self, fault: str, replica: int, down: float) -> None:
        stack = self.stack
        self.run.faults[fault] += 1
        if fault == "kill_scheduler":
            stack.kill_scheduler(replica)
            await asyncio.sleep(down)
            await asyncio.to_thread(stack.start_scheduler, replica)
        elif fault == "kill_runner":
            self.run.runner_kills.append(time.time())
            stack.kill_runner(replica)
            await asyncio.sleep(down)
            await asyncio.to_thread(stack.start_runner, replica)
        elif fault == "restart_nats":
            await asyncio.to_thread(stack.restart_nats)
        else:
            await asyncio.to_thread(stack.restart_postgres)

    async def _sample_rss(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for service in ("scheduler", "runner"):
                for replica in range(REPLICAS):
                    proc = self.stack.process(service, replica)
                    kib = rss_kib(proc.pid) if proc is not None else None
                    if kib is not None:
                        name = f"{service}-{replica}/{proc.pid if proc else 0}"
                        self.run.rss.setdefault(name, []).append(kib)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RSS_SAMPLE_EVERY)

    async def _settle(self, nc: NATS) -> None:
        """Wait until every acknowledged flow has ended and the outbox is empty (resuming a
        flow whose pause took effect after its resume, when an answer was lost)."""
        terminal = [str(s) for s in TERMINAL_FLOW_STATUSES]
        ids = list(self.run.acked)
        deadline = time.monotonic() + self.plan.settle_timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(*DATABASE_TROUBLE):
                conn = await asyncpg.connect(self.stack.database_url)
                try:
                    open_flows = await conn.fetchval(
                        "SELECT count(*) FROM flows WHERE NOT (status = ANY($1::text[]))",
                        terminal,
                    )
                    known = await conn.fetchval(
                        "SELECT count(*) FROM flows WHERE id = ANY($1::text[])", ids
                    )
                    outbox = await conn.fetchval("SELECT count(*) FROM outbox")
                    paused = await conn.fetch(
                        "SELECT id FROM flows WHERE status = 'paused' AND id = ANY($1::text[])",
                        list(self.paused),
                    )
                finally:
                    await conn.close()
                for row in paused:
                    await self._request(nc, subjects.API_RESUME, {"flow_id": row["id"]})
                if open_flows == 0 and known == len(ids) and outbox == 0:
                    return  # the relay deletes a row only once JetStream has acknowledged it
            await asyncio.sleep(SETTLE_POLL)


def flat_memory(rss: dict[str, list[int]], *, warmup: int = 3, growth: float = 1.5) -> list[str]:
    """Processes whose RSS at the end exceeds `growth` times their RSS after warm-up."""
    grew = []
    for name, samples in rss.items():
        if len(samples) <= warmup + 2:
            continue
        base = max(samples[warmup], 1)
        tail = sorted(samples[-3:])[1]
        if tail > base * growth:
            grew.append(f"{name}: {base} KiB after warm-up, {tail} KiB at the end")
    return grew


async def run_chaos(root: Path, plan: Plan, report: Callable[[str], None] = print) -> Run:
    report(f"chaos: seed={plan.seed} flows={plan.flows} duration={plan.duration:.0f}s root={root}")
    stack = await asyncio.to_thread(start_stack, root)
    try:
        return await Driver(stack, plan, root / "trail.log").go()
    finally:
        await asyncio.to_thread(stack.stop)
