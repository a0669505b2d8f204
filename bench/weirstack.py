"""The real weir services for a scenario: a fresh database on the run's private Postgres, a
fresh nats-server, and the scheduler and runner as separate processes (devstack.Stack), with
their resident memory sampled by psutil."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weir.devstack import Stack
from weir.embedded import EmbeddedPostgres
from weir_proto.spec import MAX_TASKS_DEFAULT
from weir_scheduler.data.databases import create_database, drop_database

from bench.measure import FlowSeconds, measuring

POLL_INTERVAL = 0.25
TERMINAL = ["succeeded", "failed", "rejected"]
MIB = 2**20


class Cluster:
    """The run's one private Postgres: weir and the peers each get databases on it."""

    def __init__(self, root: Path, postgres: EmbeddedPostgres | None = None) -> None:
        self.root = root
        self.postgres = postgres or EmbeddedPostgres(root / "postgres")

    def start(self) -> None:
        self.postgres.start()

    def stop(self) -> None:
        self.postgres.stop()

    def new_database(self, prefix: str) -> tuple[str, str]:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        asyncio.run(create_database(self.postgres.url, name))
        return name, self.postgres.url_for(name)

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(drop_database(self.postgres.url, name))


class RssSampler:
    """Samples the RSS of named processes every `interval` seconds in a thread; keeps peaks
    and, for a soak, every sample as (seconds since start, bytes)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.procs: dict[str, Any] = {}  # name -> psutil.Process
        self.trees: dict[str, Any] = {}
        """CPU only, of the process and all its children (Postgres: the postmaster and the
        backends serving the run's connections)."""
        self.peak: dict[str, int] = {}
        self.series: dict[str, list[tuple[float, int]]] = {}
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, name: str, pid: int) -> None:
        import psutil  # the bench extra's (`./just bench` installs it); not the test suite's

        self.procs[name] = psutil.Process(pid)
        self.peak.setdefault(name, 0)
        self.series.setdefault(name, [])

    def watch_tree(self, name: str, pid: int) -> None:
        import psutil

        self.trees[name] = psutil.Process(pid)

    def sample(self) -> None:
        import psutil

        now = time.monotonic() - self._t0
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                rss = int(proc.memory_info().rss)
                self.series[name].append((now, rss))
                if rss > self.peak[name]:
                    self.peak[name] = rss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="rss", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()

    def peak_mib(self) -> dict[str, float]:
        """Peak RSS of each watched process; replicas (`scheduler-1`) count with their kind."""
        out: dict[str, float] = {}
        for name, value in self.peak.items():
            kind = name.split("-")[0]
            out[kind] = max(out.get(kind, 0.0), round(value / MIB, 1))
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each kind of watched process has used so far, replicas
        added to their kind: per task, the cost a shared machine's load does not blur the way
        it blurs elapsed time."""
        import psutil

        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                kind = name.split("-")[0]
                out[kind] = out.get(kind, 0.0) + times.user + times.system
        for name, root in self.trees.items():
            with contextlib.suppress(psutil.Error):
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        times = proc.cpu_times()
                        out[name] = out.get(name, 0.0) + times.user + times.system
        return out

    def since(self, name: str, start: float) -> list[tuple[float, int]]:
        """The samples of `name` taken `start` seconds or more after sampling began."""
        return [(t, rss) for t, rss in self.series.get(name, []) if t >= start]

    def elapsed(self) -> float:
        return time.monotonic() - self._t0


PROFILED = {"weir_scheduler": "scheduler", "weir_runner": "runner"}


@dataclass
class ProfilingStack(Stack):
    """A Stack whose first scheduler and runner can run under pyinstrument: each writes a
    session to `<profile_to>-<service>.pyisession` at SIGTERM, rendered by `render_profiles`."""

    profile_to: Path | None = None

    def _command(self, module: str, name: str) -> list[str]:
        if self.profile_to is None or name != PROFILED.get(module):
            return super()._command(module, name)
        return [
            sys.executable,
            "-m",
            "pyinstrument",
            "--renderer",
            "pyisession",
            "--outfile",
            str(self.session_path(name)),
            "-m",
            module,
        ]

    def session_path(self, service: str) -> Path:
        assert self.profile_to is not None
        return self.profile_to.with_name(f"{service}-{self.profile_to.name}.pyisession")

    def render_profiles(self) -> None:
        """Each session as a call tree (.txt) and a flat list of own time (-flat.txt) beside
        it; the session itself (tens of MiB) is removed."""
        if self.profile_to is None:
            return
        for service in PROFILED.values():
            session = self.session_path(service)
            if not session.exists():
                continue
            stem = session.with_suffix("")
            for suffix, options in (
                (".txt", ["-r", "text"]),
                ("-flat.txt", ["-r", "text", "-p", "flat=true", "-p", "show_all=true"]),
            ):
                render = ["--load", str(session), *options, "--outfile", f"{stem}{suffix}"]
                subprocess.run(
                    [sys.executable, "-m", "pyinstrument", *render],
                    capture_output=True,
                    check=False,
                )
            session.unlink()


@dataclass
class WeirServices:
    stack: ProfilingStack
    database: str
    database_url: str
    rss: RssSampler = field(default_factory=RssSampler)

    @property
    def nats_url(self) -> str:
        return self.stack.nats_url


@contextlib.contextmanager
def weir_services(
    cluster: Cluster,
    workdir: Path,
    executor: str,
    concurrency: int,
    log_level: str,
    profile_to: Path | None = None,
    keep_database: bool = False,
    schedulers: int = 1,
    runners: int = 1,
    max_tasks: int = MAX_TASKS_DEFAULT,
) -> Iterator[WeirServices]:
    """Fresh database + NATS, `schedulers` schedulers and `runners` runners as processes;
    everything stopped after. `profile_to` (a path without suffix) profiles the first of
    each."""
    database, url = cluster.new_database("weir")
    root = workdir / f"stack-{uuid.uuid4().hex[:8]}"
    env = {
        "WEIR_EXECUTOR": executor,
        "WEIR_RUNNER_CONCURRENCY": str(concurrency),
        "WEIR_LOG_LEVEL": log_level,
        "WEIR_MAX_TASKS": str(max_tasks),
        "WEIR_MAX_SUBMIT_BYTES": str(8 * MIB),
    }
    stack = ProfilingStack(root, env=env, external_database_url=url, profile_to=profile_to)
    services = WeirServices(stack, database, url)
    try:
        stack.start()
        for replica in range(1, schedulers):
            stack.start_scheduler(replica)
        for replica in range(1, runners):
            stack.start_runner(replica)
        for kind, count in (("scheduler", schedulers), ("runner", runners)):
            for replica in range(count):
                proc = stack.process(kind, replica)
                assert proc is not None
                services.rss.watch(f"{kind}-{replica}" if replica else kind, proc.pid)
        nats_proc = getattr(stack.nats_server, "_proc", None)
        if nats_proc is not None:
            services.rss.watch("nats", nats_proc.pid)
        postmaster = getattr(cluster.postgres, "_proc", None)
        if postmaster is not None:
            services.rss.watch_tree("postgres", postmaster.pid)
        services.rss.start()
        yield services
    finally:
        services.rss.stop()
        stack.stop()
        stack.render_profiles()
        if not keep_database:
            cluster.drop_database(database)
        shutil.rmtree(root, ignore_errors=True)


# Flow specs ---------------------------------------------------------------------------------


def _task(name: str, cmd: list[str], depends: list[str] | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "cmd": cmd}
    if depends:
        task["depends"] = depends
    return task


def task_name(i: int) -> str:
    return f"t{i:05d}"


def single_task(cmd: list[str]) -> dict[str, Any]:
    return {"name": "single", "tasks": [_task("t0", cmd)]}


def independent(n: int, cmd: list[str]) -> dict[str, Any]:
    return {"name": f"independent-{n}", "tasks": [_task(task_name(i), cmd) for i in range(n)]}


def chain(n: int, cmd: list[str]) -> dict[str, Any]:
    tasks = [_task(task_name(0), cmd)]
    tasks += [_task(task_name(i), cmd, [task_name(i - 1)]) for i in range(1, n)]
    return {"name": f"chain-{n}", "tasks": tasks}


def fan(n: int, cmd: list[str]) -> dict[str, Any]:
    """One root, n-2 parallel middles depending on it, one sink depending on every middle."""
    if n < 3:
        raise ValueError("a fan-out/fan-in flow needs at least 3 tasks")
    root = task_name(0)
    middles = [task_name(i) for i in range(1, n - 1)]
    tasks = [_task(root, cmd)]
    tasks += [_task(m, cmd, [root]) for m in middles]
    tasks.append(_task(task_name(n - 1), cmd, middles))
    return {"name": f"fan-{n}", "tasks": tasks}


# Reading the outcome from Postgres ----------------------------------------------------------


async def wait_terminal(
    url: str, expected: int, timeout: float, flow_id: str | None = None
) -> tuple[int, bool]:
    """Poll until `expected` flows (or `flow_id`) are terminal. Returns (terminal, in_time)."""
    async with measuring(url) as db:
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            if flow_id is None:
                done = await db.flows_with_status(TERMINAL)
            else:
                done = 1 if await db.flow_status(flow_id) in TERMINAL else 0
            if done >= expected:
                return done, True
            await asyncio.sleep(POLL_INTERVAL)
        return done, False


async def outcome(url: str) -> dict[str, Any]:
    """Statuses, the last terminal event's time, and the event log's size."""
    async with measuring(url) as db:
        return {
            "statuses": await db.flow_status_counts(),
            "last_terminal_epoch": await db.last_terminal_epoch(),
            "event_rows": await db.event_count(),
            "event_bytes": await db.event_bytes(),
            "tasks": await db.task_count(),
        }


async def step_latencies_ms(url: str, flow_id: str, order: list[str]) -> list[float]:
    """parent task_succeeded `at` -> child task_started `at` along a chain, from the log."""
    async with measuring(url) as db:
        rows = await db.event_times(flow_id)
    started = {r.task: r.at for r in rows if r.type == "task_started"}
    succeeded = {r.task: r.at for r in rows if r.type == "task_succeeded"}
    out = []
    for parent, child in itertools.pairwise(order):
        if parent in succeeded and child in started:
            out.append((started[child] - succeeded[parent]) * 1000.0)
    return out


async def flow_seconds(url: str, statement: FlowSeconds, flow_id: str) -> float | None:
    """The one number `statement` (of bench/measure.sql) reads from the log of `flow_id`, as
    seconds; None when the log has none."""
    async with measuring(url) as db:
        return await db.flow_seconds(statement, flow_id)


async def first_started_epoch(url: str, flow_id: str) -> float | None:
    return await flow_seconds(url, "first_started_epoch", flow_id)
