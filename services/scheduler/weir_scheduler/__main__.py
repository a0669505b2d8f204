"""`weir-scheduler`: run the scheduler until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys

from weir import logs, telemetry
from weir.config import ConfigError, Settings
from weir.supervisor import LoopsFailed

from weir_scheduler.service import Scheduler


async def _main(settings: Settings) -> None:
    scheduler = Scheduler(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, scheduler.stop.set)
    await scheduler.run()


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"weir-scheduler: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.setup("weir.scheduler", settings.log_level)
    telemetry.setup("weir-scheduler")
    try:
        asyncio.run(_main(settings))
    except LoopsFailed as failed:  # logged; exit non-zero so that the process is restarted
        print(f"weir-scheduler: {failed}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
