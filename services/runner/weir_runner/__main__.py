"""`weir-runner`: run dispatched task attempts until SIGTERM or SIGINT."""

from __future__ import annotations

from weir.config import ConfigError, Settings
from weir.process import exit_with, run_service
from weir.secrets import SecretError, take_credentials

from weir_runner.containment import harden_runner
from weir_runner.worker import Runner


def main() -> None:
    # First of all: tasks of this user must not read this process's memory or environment
    # (NATS credentials, WEIR_SECRET_KEY) through /proc.
    harden_runner()
    try:
        # Held in memory from here on; no process the runner starts inherits them.
        take_credentials()
        settings = Settings.from_env()
    except (ConfigError, SecretError) as exc:
        exit_with("weir-runner", exc, 2)
    run_service("weir-runner", "weir.runner", settings, Runner)


if __name__ == "__main__":
    main()
