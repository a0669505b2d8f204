"""One config loader for every process: settings come from `WEIR_*` environment variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

EXECUTORS = ("local", "noop", "kubernetes")
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> float:
    """Seconds in `3600`, `90s`, `15m`, `12h` or `30d`."""
    raw = raw.strip()
    unit = raw[-1] if raw and raw[-1] in _UNITS else "s"
    number = raw[:-1] if raw and raw[-1] in _UNITS else raw
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"{raw!r} is not a duration like 3600, 15m, 12h or 30d") from None
    if not value >= 0:
        raise ValueError(f"{raw!r} must not be negative")
    return value


def _duration(env: dict[str, str], name: str) -> float | None:
    """A duration setting; unset or empty means None."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def _queue_limits(text: str) -> dict[str, int]:
    limits: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        queue, sep, value = part.partition("=")
        if not sep or not queue.strip() or not value.strip().isdigit() or int(value) < 1:
            raise ConfigError(
                f"WEIR_QUEUE_LIMITS: {part!r} is not QUEUE=LIMIT with a limit of at least 1"
            )
        limits[queue.strip()] = int(value)
    return limits


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
    lease: float = 60.0
    """Seconds without a heartbeat before a running attempt is declared lost."""
    deadline_grace: float = 30.0
    heartbeat_interval: float = 5.0
    queue_limits: dict[str, int] = field(default_factory=dict)
    """Global concurrency limit per queue (WEIR_QUEUE_LIMITS=gpu=4,default=200)."""
    prune_after: float | None = None
    """Seconds after which ended flows are deleted by the periodic pruner (None: never)."""
    prune_interval: float = 3600.0
    scheduler_ack_wait: float = 15.0
    """Seconds before commands or reports taken by a scheduler that died go to another one."""
    shutdown_grace: float = 10.0
    log_level: str = "INFO"
    kube_namespace: str = "default"
    """Namespace the kubernetes executor creates its pods in."""
    kube_config: str = ""
    """Kubeconfig file for the kubernetes executor; empty: in-cluster, else ~/.kube/config."""
    kube_image_pull_timeout: float = 120.0
    """Seconds a pod may fail to pull its image (or start its container) before it fails."""
    kube_unschedulable_timeout: float = 300.0
    """Seconds a pod may stay unschedulable before its attempt fails."""
    kube_pod_ttl: float = 0.0
    """Seconds a finished pod is kept after its logs were captured (0: delete at once)."""
    artifacts_bucket: str = "weir-artifacts"
    """NATS Object Store bucket of task artifacts (one per deployment)."""
    kube_run_as_non_root: bool = False
    kube_helper_image: str = "weir:latest"
    """Image (with weir installed) of the pods' artifact download/upload containers."""
    kube_data_secret: str = "weir-task-nats"
    """Kubernetes Secret with `url` and `creds` (a NATS user limited to the artifacts bucket)
    that the artifact helper containers use."""

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
            lease=_float(env, "WEIR_LEASE", 60.0, minimum=1.0),
            deadline_grace=_float(env, "WEIR_DEADLINE_GRACE", 30.0),
            heartbeat_interval=_float(env, "WEIR_HEARTBEAT_INTERVAL", 5.0, minimum=0.1),
            queue_limits=_queue_limits(env.get("WEIR_QUEUE_LIMITS", "")),
            prune_after=_duration(env, "WEIR_PRUNE_AFTER"),
            prune_interval=_float(env, "WEIR_PRUNE_INTERVAL", 3600.0, minimum=1.0),
            scheduler_ack_wait=_float(env, "WEIR_SCHEDULER_ACK_WAIT", 15.0, minimum=1.0),
            shutdown_grace=_float(env, "WEIR_SHUTDOWN_GRACE", 10.0),
            log_level=env.get("WEIR_LOG_LEVEL", "INFO").upper(),
            kube_namespace=env.get("WEIR_KUBE_NAMESPACE") or "default",
            kube_config=env.get("WEIR_KUBECONFIG") or env.get("KUBECONFIG") or "",
            kube_image_pull_timeout=_float(env, "WEIR_KUBE_IMAGE_PULL_TIMEOUT", 120.0, 1.0),
            kube_unschedulable_timeout=_float(env, "WEIR_KUBE_UNSCHEDULABLE_TIMEOUT", 300.0, 1.0),
            kube_pod_ttl=_float(env, "WEIR_KUBE_POD_TTL", 0.0),
            artifacts_bucket=env.get("WEIR_ARTIFACTS_BUCKET") or "weir-artifacts",
            kube_run_as_non_root=env.get("WEIR_KUBE_RUN_AS_NON_ROOT", "").lower()
            in ("1", "true", "yes"),
            kube_helper_image=env.get("WEIR_KUBE_HELPER_IMAGE") or "weir:latest",
            kube_data_secret=env.get("WEIR_KUBE_DATA_SECRET") or "weir-task-nats",
        )


@dataclass(frozen=True)
class NatsSecurity:
    """How every process authenticates to NATS and protects the connection (all optional).

    `WEIR_NATS_USER`/`WEIR_NATS_PASSWORD`, `WEIR_NATS_TOKEN`, `WEIR_NATS_CREDS` (a `.creds`
    file: JWT + NKey seed), `WEIR_NATS_NKEY_SEED` (a file holding an NKey seed), and TLS:
    `WEIR_NATS_TLS_CA` (CA bundle to verify the server), `WEIR_NATS_TLS_CERT` and
    `WEIR_NATS_TLS_KEY` (client certificate and key, for servers that verify clients).
    Read by `weir.jetstream.connect`, so every process honours them.
    """

    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    creds: str = ""
    nkey_seed: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> NatsSecurity:
        env = dict(os.environ if env is None else env)
        security = cls(
            user=env.get("WEIR_NATS_USER", ""),
            password=env.get("WEIR_NATS_PASSWORD", ""),
            token=env.get("WEIR_NATS_TOKEN", ""),
            creds=env.get("WEIR_NATS_CREDS", ""),
            nkey_seed=env.get("WEIR_NATS_NKEY_SEED", ""),
            tls_ca=env.get("WEIR_NATS_TLS_CA", ""),
            tls_cert=env.get("WEIR_NATS_TLS_CERT", ""),
            tls_key=env.get("WEIR_NATS_TLS_KEY", ""),
        )
        security.validate()
        return security

    def validate(self) -> None:
        if self.password and not self.user:
            raise ConfigError("WEIR_NATS_PASSWORD is set without WEIR_NATS_USER")
        methods = [
            name
            for name, value in (
                ("WEIR_NATS_USER", self.user),
                ("WEIR_NATS_TOKEN", self.token),
                ("WEIR_NATS_CREDS", self.creds),
                ("WEIR_NATS_NKEY_SEED", self.nkey_seed),
            )
            if value
        ]
        if len(methods) > 1:
            raise ConfigError(
                f"choose one way to authenticate to NATS, not {' and '.join(methods)}"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("WEIR_NATS_TLS_CERT and WEIR_NATS_TLS_KEY go together")
        for name, path in (
            ("WEIR_NATS_CREDS", self.creds),
            ("WEIR_NATS_NKEY_SEED", self.nkey_seed),
            ("WEIR_NATS_TLS_CA", self.tls_ca),
            ("WEIR_NATS_TLS_CERT", self.tls_cert),
            ("WEIR_NATS_TLS_KEY", self.tls_key),
        ):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{name}={path!r} is not a readable file")

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert)
