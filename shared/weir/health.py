"""Readiness and liveness over NATS: every process answers health requests.

Each process answers `weir.health.<service>.<instance>` (that process) and the shared
`weir.health.<service>` (any one process of the service answers a request; a client that
collects replies until a timeout hears from all of them). The reply is JSON:

    {"service": "scheduler", "instance": "sched-a", "status": "ok",
     "ready": true, "live": true, "uptime": 12.3,
     "checks": {"nats": {"ok": true}, "postgres": {"ok": false, "error": "..."}},
     "loops": {"timers": {"ok": true},
               "cron": {"ok": false, "failures": 2, "error": "ConcurrencyError: ..."}}}

`status` is `ok` when the process is ready, every check passes and no background loop is
failing; `starting` before it is ready; and `degraded` when a check fails or a loop is failing
(see weir.supervisor: the loop is being restarted with back-off; the process is alive but
cannot do all its work, and a load balancer or operator should not count on it). A process
that answers at all is live.

Services call `serve_health` once connected to NATS, and `Health.set_ready()` when ready:

    health = await serve_health(nc, "scheduler", instance, postgres=data.ping)
    ...
    health.set_ready()
    ...
    await health.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from weir_proto import subjects

from weir.supervisor import LoopState

log = logging.getLogger("weir.health")

HEALTH_PREFIX = "weir.health"
CHECK_TIMEOUT_DEFAULT = 1.0
"""Seconds one check may take before it counts as failed (a hung database is not healthy)."""

Check = Callable[[], Awaitable[None]]
"""A check passes by returning and fails by raising; the exception text is reported."""


class CheckResult(msgspec.Struct, omit_defaults=True):
    ok: bool
    error: str | None = None


class HealthReport(msgspec.Struct):
    service: str
    instance: str
    status: str
    ready: bool
    live: bool
    uptime: float
    checks: dict[str, CheckResult]
    loops: dict[str, LoopState] = {}
    """The process's supervised background loops (weir.supervisor), by name."""


Loops = Callable[[], Mapping[str, LoopState]]
"""The current state of a process's background loops."""

_encoder = msgspec.json.Encoder()


def health_subject(service: str, instance: str | None = None) -> str:
    """`weir.health.<service>` or, for one process, `weir.health.<service>.<instance>`."""
    base = f"{HEALTH_PREFIX}.{subjects.token(service, 'unnamed')}"
    return base if instance is None else f"{base}.{subjects.token(instance, 'unnamed')}"


def default_instance() -> str:
    """Host name and process id: unique among the replicas on one machine."""
    return f"{socket.gethostname()}-{os.getpid()}"


def nats_check(nc: NATS) -> Check:
    async def check() -> None:
        if not nc.is_connected:
            raise ConnectionError("not connected to NATS (reconnecting)")

    return check


@dataclass
class Health:
    """The health responder of one process."""

    nc: NATS
    service: str
    instance: str
    checks: Mapping[str, Check]
    loops: Loops | None = None
    check_timeout: float = CHECK_TIMEOUT_DEFAULT
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    _subs: list[Subscription] = field(default_factory=list)

    def set_ready(self, ready: bool = True) -> None:
        self.ready = ready

    async def report(self) -> HealthReport:
        names = list(self.checks)
        outcomes = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
        results = dict(zip(names, outcomes, strict=True))
        loops = dict(self.loops()) if self.loops is not None else {}
        healthy = all(r.ok for r in results.values()) and all(s.ok for s in loops.values())
        status = "starting" if not self.ready else "ok" if healthy else "degraded"
        return HealthReport(
            service=self.service,
            instance=self.instance,
            status=status,
            ready=self.ready and healthy,
            live=True,
            uptime=round(time.monotonic() - self.started, 3),
            checks=results,
            loops=loops,
        )

    async def _run(self, check: Check) -> CheckResult:
        try:
            await asyncio.wait_for(check(), self.check_timeout)
        except TimeoutError:
            return CheckResult(ok=False, error=f"no answer within {self.check_timeout:g}s")
        except Exception as exc:
            # Never echo connection strings: only the kind and message of the error.
            return CheckResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
        return CheckResult(ok=True)

    async def _answer(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            await msg.respond(_encoder.encode(await self.report()))
        except Exception as exc:
            log.warning("health reply failed", extra={"error": str(exc)})

    async def start(self) -> None:
        for subject in (health_subject(self.service, self.instance), health_subject(self.service)):
            self._subs.append(await self.nc.subscribe(subject, cb=self._answer))

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()


async def serve_health(
    nc: NATS,
    service: str,
    instance: str | None = None,
    *,
    postgres: Check | None = None,
    extra_checks: Mapping[str, Check] | None = None,
    loops: Loops | None = None,
) -> Health:
    """Answer health requests for this process until `Health.stop()`.

    Checks: `nats` always, `postgres` when given (the data layer's `ping`), plus
    `extra_checks`; `loops` (a supervisor's `states`) reports the background loops.
    """
    checks: dict[str, Check] = {"nats": nats_check(nc)}
    if postgres is not None:
        checks["postgres"] = postgres
    checks.update(extra_checks or {})
    health = Health(nc, service, instance or default_instance(), checks, loops)
    await health.start()
    return health


async def probe(nc: NATS, service: str, instance: str | None = None, timeout: float = 2.0) -> Any:
    """Ask one process (or any process of `service`) for its health; the decoded reply."""
    msg = await nc.request(health_subject(service, instance), b"", timeout=timeout)
    return msgspec.json.decode(msg.data)
