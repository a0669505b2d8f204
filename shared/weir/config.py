"""One config loader for every process: settings come from `WEIR_*` environment variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

EXECUTORS = ("local", "noop")
NATS_URL_DEFAULT = "nats://127.0.0.1:4222"
DATABASE_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/weir"


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    nats_url: str = NATS_URL_DEFAULT
    database_url: str = DATABASE_URL_DEFAULT
    executor: str = "local"
    runner_concurrency: int = 8
    runner_queues: tuple[str, ...] = ("default",)
    runner_dir: str = ".weir/attempts"
    runner_name: str = field(default_factory=socket.gethostname)
    max_tasks: int = 10_000
    max_submit_bytes: int = 4 * 1024 * 1024
    dispatch_ack_wait: float = 30.0
    """Seconds before a dispatch whose runner went silent is handed to another runner."""
    scheduler_ack_wait: float = 15.0
    """Seconds before commands or reports taken by a scheduler that died go to another one."""
    shutdown_grace: float = 10.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        executor = env.get("WEIR_EXECUTOR", "local")
        if executor not in EXECUTORS:
            raise ConfigError(
                f"WEIR_EXECUTOR={executor!r} is not an executor (choose: {', '.join(EXECUTORS)})"
            )
        queues = tuple(q for q in env.get("WEIR_RUNNER_QUEUES", "default").split(",") if q)
        return cls(
            nats_url=env.get("WEIR_NATS_URL", NATS_URL_DEFAULT),
            database_url=env.get("WEIR_DATABASE_URL", DATABASE_URL_DEFAULT),
            executor=executor,
            runner_concurrency=_int(env, "WEIR_RUNNER_CONCURRENCY", 8),
            runner_queues=queues or ("default",),
            runner_dir=env.get("WEIR_RUNNER_DIR", ".weir/attempts"),
            runner_name=env.get("WEIR_RUNNER_NAME") or socket.gethostname(),
            max_tasks=_int(env, "WEIR_MAX_TASKS", 10_000),
            max_submit_bytes=_int(env, "WEIR_MAX_SUBMIT_BYTES", 4 * 1024 * 1024),
            dispatch_ack_wait=_float(env, "WEIR_DISPATCH_ACK_WAIT", 30.0, minimum=1.0),
            scheduler_ack_wait=_float(env, "WEIR_SCHEDULER_ACK_WAIT", 15.0, minimum=1.0),
            shutdown_grace=_float(env, "WEIR_SHUTDOWN_GRACE", 10.0),
            log_level=env.get("WEIR_LOG_LEVEL", "INFO").upper(),
        )
