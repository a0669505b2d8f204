"""How a weir service process runs (`weir-scheduler`, `weir-runner`): logs and telemetry set
up, the service run until SIGTERM or SIGINT, and the exit status a supervisor (systemd,
Kubernetes) acts on: 2 for a configuration error, 1 when its background loops failed (so
that it is restarted), each with one line on stderr instead of a traceback."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable
from typing import NoReturn, Protocol

from weir import logs, telemetry
from weir.config import ConfigError, Settings
from weir.supervisor import LoopsFailed, Supervisor

YOUNG_COLLECTION_EVERY = 10_000
"""Objects a service allocates (net of those freed) between two collections of the youngest
generation; Python's default is 700. Every message a service handles makes hundreds of short-
lived objects (decoded structs, futures, events), nearly all freed by reference counting, so
at 700 the cyclic collector ran every few messages and found next to nothing: the scheduler
spent about a fifth of its CPU per single-task flow on it (bench/results/perf-eighth-pass.md).
The older generations keep Python's ratios (each collected after ten of the one younger), so
cyclic garbage still goes within a few collections."""


class Service(Protocol):
    """A service: `run()` until `stop` is set."""

    stop: asyncio.Event

    async def run(self) -> None: ...


def service_loops(service: str, settings: Settings) -> Supervisor:
    """The supervisor of a service's background loops, with the restart limits its settings
    give (WEIR_LOOP_FAILURES_MAX, WEIR_LOOP_BACKOFF_MAX)."""
    return Supervisor(
        service, failures_max=settings.loop_failures_max, backoff_max=settings.loop_backoff_max
    )


def run_service(
    program: str, logger: str, settings: Settings, service: Callable[[Settings], Service]
) -> None:
    """Run `service(settings)` in this process until SIGTERM or SIGINT sets its `stop`."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, older, oldest)
    logs.setup(logger, settings.log_level)
    telemetry.setup(program)

    async def main() -> None:
        running = service(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, running.stop.set)
        await running.run()

    try:
        asyncio.run(main())
    except ConfigError as exc:
        exit_with(program, exc, 2)
    except LoopsFailed as failed:  # logged; exit non-zero so that the process is restarted
        exit_with(program, failed, 1)
    finally:
        telemetry.shutdown()


def exit_with(program: str, problem: Exception, status: int) -> NoReturn:
    """End the process with `status` and one line on stderr saying why."""
    print(f"{program}: {problem}", file=sys.stderr)
    raise SystemExit(status) from None
