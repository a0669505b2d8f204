"""`weir-scheduler`: run the scheduler until SIGTERM or SIGINT."""

from __future__ import annotations

from weir.config import ConfigError, Settings
from weir.process import exit_with, run_service

from weir_scheduler.service import Scheduler


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        exit_with("weir-scheduler", exc, 2)
    run_service("weir-scheduler", "weir.scheduler", settings, Scheduler)


if __name__ == "__main__":
    main()
