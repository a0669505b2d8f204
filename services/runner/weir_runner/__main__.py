"""`weir-runner`: run dispatched task attempts until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys

from weir import logs, telemetry
from weir.config import ConfigError, Settings
from weir.secrets import SecretError, take_credentials
from weir.supervisor import LoopsFailed

from weir_runner.containment import harden_runner
from weir_runner.worker import Runner


async def _main(settings: Settings) -> None:
    runner = Runner(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop.set)
    await runner.run()


def main() -> None:
    # First of all: tasks of this user must not read this process's memory or environment
    # (NATS credentials, WEIR_SECRET_KEY) through /proc.
    harden_runner()
    try:
        # Held in memory from here on; no process the runner starts inherits them.
        take_credentials()
        settings = Settings.from_env()
    except (ConfigError, SecretError) as exc:
        print(f"weir-runner: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.setup("weir.runner", settings.log_level)
    telemetry.setup("weir-runner")
    try:
        asyncio.run(_main(settings))
    except ConfigError as exc:
        print(f"weir-runner: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except LoopsFailed as failed:  # logged; exit non-zero so that the process is restarted
        print(f"weir-runner: {failed}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
