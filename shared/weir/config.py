"""One config loader for every process: settings come from `WEIR_*` environment variables."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from weir_proto.durations import parse_duration
from weir_proto.errors import WeirException

from weir.supervisor import LOOP_BACKOFF_MAX_DEFAULT, LOOP_BACKOFF_MIN, LOOP_FAILURES_MAX_DEFAULT

EXECUTORS = ("local", "noop", "kubernetes")
NATS_URL_DEFAULT = "nats://127.0.0.1:4222"
DATABASE_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/weir"


class ConfigError(WeirException, ValueError):
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


RUNNER_KEEP_DEFAULT = 7 * 24 * 3600.0
"""A week: long past any redelivery of the attempt's dispatch (which is what the recorded
result answers), long enough to read its files when something went wrong."""


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


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

TASK_USER_DEFAULT = "nobody"
"""The user a root runner's local tasks run as (a runner that is not root runs them as
itself)."""
TASK_MEMORY_MAX_DEFAULT = 4 * 1024**3
TASK_PIDS_MAX_DEFAULT = 1024
TASK_LOG_MAX_DEFAULT = 10 * 1024**2
TASK_TIMEOUT_DEFAULT = 24 * 3600.0
"""The timeout of a task that sets none (local executor)."""

COMMANDS_MAX_MSGS_DEFAULT = 1_000_000
COMMANDS_MAX_BYTES_DEFAULT = 1024**3
"""WEIR_COMMANDS keeps commands a week, also those already recorded (so a submit outlives a
scheduler outage): the limits count a week of submits. Past them a publish to `weir.cmd.>`
is refused, and nothing already accepted is dropped."""
MAX_PENDING_FLOWS_DEFAULT = 10_000
SUBMIT_RATE_DEFAULT = 50.0
SUBMIT_BURST_DEFAULT = 200

FLOW_DISPATCH_WINDOW_DEFAULT = 16
"""Not-yet-started dispatches one flow may have waiting per queue: enough to keep runners
busy between two round trips, few enough that another flow's task waits behind little."""


def _size(env: dict[str, str], name: str, default: int | None) -> int | None:
    """A size in bytes (`1048576`, `512K`, `64M`, `4G`, `1T`; `off` means no limit)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in ("off", "max", "none"):
        return None
    text = raw.upper().removesuffix("IB").removesuffix("B")
    unit = text[-1] if text and text[-1] in _SIZE_UNITS else ""
    number = text[: len(text) - len(unit)]
    if not number.isdigit() or int(number) < 1:
        raise ConfigError(
            f"{name}={raw!r} is not a size like 1048576, 512K, 64M or 4G (or off for no limit)"
        )
    return int(number) * _SIZE_UNITS[unit]


def _log_max(env: dict[str, str]) -> int:
    value = _size(env, "WEIR_TASK_LOG_MAX", TASK_LOG_MAX_DEFAULT)
    if value is None or value < 2048:
        raise ConfigError(
            "WEIR_TASK_LOG_MAX must be a size of at least 2K (task logs are always capped)"
        )
    return value


def _limit(env: dict[str, str], name: str, default: int | None) -> int | None:
    """A whole number of at least 1, or `off` for no limit."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in ("off", "max", "none"):
        return None
    return _int(env, name, 1)


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


S3_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
"""S3's rules for bucket names (3-63 lower-case letters, digits, dots and hyphens)."""


@dataclass(frozen=True)
class S3Storage:
    """S3-compatible storage of artifacts: `WEIR_ARTIFACTS_URL=s3://BUCKET/PREFIX`, with
    `WEIR_S3_ENDPOINT_URL` for MinIO, R2, Ceph and the like. Without keys, boto3 finds
    credentials itself (profile, instance role, Kubernetes service account)."""

    bucket: str
    prefix: str = ""
    """Key prefix without slashes at its ends; the artifact `name` of flow `flow` is the
    object `<prefix>/<flow>/<name>`."""
    endpoint_url: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)
    session_token: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Storage | None:
        """The storage the environment selects; None: the NATS Object Store."""
        env = dict(os.environ if env is None else env)
        return s3_storage(**_s3_settings(env))


def _s3_settings(env: dict[str, str]) -> dict[str, str]:
    """The S3 settings `Settings` keeps, by field name: the standard AWS variables for the
    region and the credentials, so boto3's documentation applies as it is."""
    return {
        "artifacts_url": env.get("WEIR_ARTIFACTS_URL", "").strip(),
        "s3_endpoint_url": env.get("WEIR_S3_ENDPOINT_URL", "").strip(),
        "s3_region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "",
        "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID", ""),
        "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY", ""),
        "aws_session_token": env.get("AWS_SESSION_TOKEN", ""),
    }


def s3_storage(
    artifacts_url: str,
    s3_endpoint_url: str = "",
    s3_region: str = "",
    aws_access_key_id: str = "",
    aws_secret_access_key: str = "",
    aws_session_token: str = "",
) -> S3Storage | None:
    """Check the S3 settings; None when `artifacts_url` is empty (the NATS Object Store)."""
    if not artifacts_url:
        if s3_endpoint_url:
            raise ConfigError(
                "WEIR_S3_ENDPOINT_URL is set, but WEIR_ARTIFACTS_URL is not: set "
                "WEIR_ARTIFACTS_URL=s3://BUCKET/PREFIX to keep artifacts in S3"
            )
        return None
    parts = urlsplit(artifacts_url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(
            f"WEIR_ARTIFACTS_URL={artifacts_url!r} is not s3://BUCKET/PREFIX (leave it unset to "
            "keep artifacts in the NATS Object Store bucket WEIR_ARTIFACTS_BUCKET)"
        )
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            "WEIR_ARTIFACTS_URL is s3://BUCKET/PREFIX only: no credentials, query or fragment "
            "(credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if not S3_BUCKET_NAME.match(parts.netloc):
        raise ConfigError(
            f"WEIR_ARTIFACTS_URL: {parts.netloc!r} is not an S3 bucket name "
            "(3-63 lower-case letters, digits, '.' and '-', starting and ending with a letter "
            "or digit)"
        )
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise ConfigError(
            f"WEIR_ARTIFACTS_URL={artifacts_url!r}: the prefix {prefix!r} has an empty, '.' or "
            "'..' part"
        )
    if s3_endpoint_url:
        endpoint = urlsplit(s3_endpoint_url)
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            raise ConfigError(
                f"WEIR_S3_ENDPOINT_URL={s3_endpoint_url!r} is not an http:// or https:// URL "
                "(like http://minio:9000)"
            )
    if bool(aws_access_key_id) != bool(aws_secret_access_key):
        raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together")
    if aws_session_token and not aws_access_key_id:
        raise ConfigError(
            "AWS_SESSION_TOKEN is set without AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return S3Storage(
        bucket=parts.netloc,
        prefix=prefix,
        endpoint_url=s3_endpoint_url,
        region=s3_region,
        access_key_id=aws_access_key_id,
        secret_access_key=aws_secret_access_key,
        session_token=aws_session_token,
    )


def _names(env: dict[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list (`a,b`), blanks dropped."""
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    nats_url: str = NATS_URL_DEFAULT
    database_url: str = DATABASE_URL_DEFAULT
    executor: str = "local"
    runner_concurrency: int = 8
    runner_queues: tuple[str, ...] = ("default",)
    runner_dir: str = ".weir/attempts"
    runner_keep: float = RUNNER_KEEP_DEFAULT
    """Seconds a finished attempt's directory (its logs, result, files) is kept."""
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

    # Fair sharing and limits (docs/jobs.md#fairness-and-limits).
    flow_dispatch_window: int = FLOW_DISPATCH_WINDOW_DEFAULT
    """Dispatches per flow and queue that no runner has started yet; the rest wait in the
    scheduler, so another flow's task waits behind at most this many of each flow's."""
    commands_max_msgs: int = COMMANDS_MAX_MSGS_DEFAULT
    commands_max_bytes: int = COMMANDS_MAX_BYTES_DEFAULT
    """Limits of the WEIR_COMMANDS stream (discard new: a flood is refused at publish)."""
    max_pending_flows: int = MAX_PENDING_FLOWS_DEFAULT
    """Flows not ended yet beyond which `weir.api.submit` refuses new ones (`overloaded`)."""
    submit_rate: float = SUBMIT_RATE_DEFAULT
    submit_burst: int = SUBMIT_BURST_DEFAULT
    """Submits per second (sustained) and at once (burst) one NATS connection may make on
    `weir.api.submit` before it is answered `rate_limited`."""
    prune_after: float | None = None
    """Seconds after which ended flows are deleted by the periodic pruner (None: never)."""
    prune_interval: float = 3600.0
    scheduler_ack_wait: float = 15.0
    """Seconds before commands or reports taken by a scheduler that died go to another one."""
    shutdown_grace: float = 10.0
    loop_failures_max: int = LOOP_FAILURES_MAX_DEFAULT
    """Consecutive failures of one background loop that make the process exit (non-zero)."""
    loop_backoff_max: float = LOOP_BACKOFF_MAX_DEFAULT
    """Longest pause (seconds) before a failing background loop is restarted."""
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
    artifacts_url: str = ""
    """`s3://BUCKET/PREFIX`: artifacts go to S3-compatible storage instead (see
    `artifacts_s3`); empty: the NATS Object Store bucket `artifacts_bucket`."""
    s3_endpoint_url: str = ""
    """S3 API endpoint other than AWS's (MinIO, R2, Ceph): WEIR_S3_ENDPOINT_URL."""
    s3_region: str = ""
    aws_access_key_id: str = ""
    aws_secret_access_key: str = field(default="", repr=False)
    aws_session_token: str = field(default="", repr=False)
    runner_task_user: str = TASK_USER_DEFAULT
    """Name or uid of the user local tasks run as when the runner runs as root (`root`: as
    root, unisolated)."""
    task_memory_max: int | None = TASK_MEMORY_MAX_DEFAULT
    """Bytes of memory per local attempt (cgroup memory.max, else RLIMIT_AS); None: no limit."""
    task_pids_max: int | None = TASK_PIDS_MAX_DEFAULT
    """Processes per local attempt (cgroup pids.max, else RLIMIT_NPROC of the task user)."""
    task_cpu_seconds: int | None = None
    """CPU seconds per process of a local attempt (RLIMIT_CPU); None: no limit."""
    task_log_max: int = TASK_LOG_MAX_DEFAULT
    """Bytes of stdout and stderr kept on the runner's disk per local attempt (half each)."""
    task_timeout: float = TASK_TIMEOUT_DEFAULT
    """Seconds a local task without a `timeout` of its own may run."""
    kube_run_as_non_root: bool = False
    kube_helper_image: str = "weir:latest"
    """Image (with weir installed) of the pods' artifact download/upload containers."""
    kube_data_secret: str = "weir-task-nats"
    """Kubernetes Secret (in the pods' namespace) with `url` and a NATS user limited to the
    artifacts bucket, as `user` and `password` or as `creds`, that the artifact helper
    containers use."""

    # What a task's `kubernetes` section may ask for (the runner refuses the rest, see
    # docs/kubernetes.md): comma-separated allow-lists, all empty by default.
    kube_allowed_secrets: tuple[str, ...] = ()
    """Kubernetes Secrets a `fromSecret` may read directly (weir's secret store: always)."""
    kube_allowed_service_accounts: tuple[str, ...] = ()
    kube_allowed_annotations: tuple[str, ...] = ()
    kube_allowed_node_selectors: tuple[str, ...] = ()
    """Node label keys."""
    kube_allowed_tolerations: tuple[str, ...] = ()
    """Taint keys."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        executor = env.get("WEIR_EXECUTOR", "local")
        if executor not in EXECUTORS:
            raise ConfigError(
                f"WEIR_EXECUTOR={executor!r} is not an executor (choose: {', '.join(EXECUTORS)})"
            )
        queues = tuple(q for q in env.get("WEIR_RUNNER_QUEUES", "default").split(",") if q)
        s3 = _s3_settings(env)
        s3_storage(**s3)  # a bad value fails here, with the other settings, not at first use
        return cls(
            nats_url=env.get("WEIR_NATS_URL", NATS_URL_DEFAULT),
            database_url=env.get("WEIR_DATABASE_URL", DATABASE_URL_DEFAULT),
            executor=executor,
            runner_concurrency=_int(env, "WEIR_RUNNER_CONCURRENCY", 8),
            runner_queues=queues or ("default",),
            runner_dir=env.get("WEIR_RUNNER_DIR", ".weir/attempts"),
            runner_keep=_duration(env, "WEIR_RUNNER_KEEP") or RUNNER_KEEP_DEFAULT,
            runner_name=env.get("WEIR_RUNNER_NAME") or socket.gethostname(),
            max_tasks=_int(env, "WEIR_MAX_TASKS", 10_000),
            max_submit_bytes=_int(env, "WEIR_MAX_SUBMIT_BYTES", 4 * 1024 * 1024),
            dispatch_ack_wait=_float(env, "WEIR_DISPATCH_ACK_WAIT", 30.0, minimum=1.0),
            lease=_float(env, "WEIR_LEASE", 60.0, minimum=1.0),
            deadline_grace=_float(env, "WEIR_DEADLINE_GRACE", 30.0),
            heartbeat_interval=_float(env, "WEIR_HEARTBEAT_INTERVAL", 5.0, minimum=0.1),
            queue_limits=_queue_limits(env.get("WEIR_QUEUE_LIMITS", "")),
            flow_dispatch_window=_int(
                env, "WEIR_FLOW_DISPATCH_WINDOW", FLOW_DISPATCH_WINDOW_DEFAULT
            ),
            commands_max_msgs=_int(env, "WEIR_COMMANDS_MAX_MSGS", COMMANDS_MAX_MSGS_DEFAULT),
            commands_max_bytes=_size(env, "WEIR_COMMANDS_MAX_BYTES", COMMANDS_MAX_BYTES_DEFAULT)
            or COMMANDS_MAX_BYTES_DEFAULT,
            max_pending_flows=_int(env, "WEIR_MAX_PENDING_FLOWS", MAX_PENDING_FLOWS_DEFAULT),
            submit_rate=_float(env, "WEIR_SUBMIT_RATE", SUBMIT_RATE_DEFAULT, minimum=0.01),
            submit_burst=_int(env, "WEIR_SUBMIT_BURST", SUBMIT_BURST_DEFAULT),
            prune_after=_duration(env, "WEIR_PRUNE_AFTER"),
            prune_interval=_float(env, "WEIR_PRUNE_INTERVAL", 3600.0, minimum=1.0),
            scheduler_ack_wait=_float(env, "WEIR_SCHEDULER_ACK_WAIT", 15.0, minimum=1.0),
            shutdown_grace=_float(env, "WEIR_SHUTDOWN_GRACE", 10.0),
            loop_failures_max=_int(env, "WEIR_LOOP_FAILURES_MAX", LOOP_FAILURES_MAX_DEFAULT),
            loop_backoff_max=_float(
                env, "WEIR_LOOP_BACKOFF_MAX", LOOP_BACKOFF_MAX_DEFAULT, minimum=LOOP_BACKOFF_MIN
            ),
            log_level=env.get("WEIR_LOG_LEVEL", "INFO").upper(),
            kube_namespace=env.get("WEIR_KUBE_NAMESPACE") or "default",
            kube_config=env.get("WEIR_KUBECONFIG") or env.get("KUBECONFIG") or "",
            kube_image_pull_timeout=_float(env, "WEIR_KUBE_IMAGE_PULL_TIMEOUT", 120.0, 1.0),
            kube_unschedulable_timeout=_float(env, "WEIR_KUBE_UNSCHEDULABLE_TIMEOUT", 300.0, 1.0),
            kube_pod_ttl=_float(env, "WEIR_KUBE_POD_TTL", 0.0),
            artifacts_bucket=env.get("WEIR_ARTIFACTS_BUCKET") or "weir-artifacts",
            runner_task_user=env.get("WEIR_RUNNER_TASK_USER", "").strip() or TASK_USER_DEFAULT,
            task_memory_max=_size(env, "WEIR_TASK_MEMORY_MAX", TASK_MEMORY_MAX_DEFAULT),
            task_pids_max=_limit(env, "WEIR_TASK_PIDS_MAX", TASK_PIDS_MAX_DEFAULT),
            task_cpu_seconds=_limit(env, "WEIR_TASK_CPU_SECONDS", None),
            task_log_max=_log_max(env),
            task_timeout=_duration(env, "WEIR_TASK_TIMEOUT") or TASK_TIMEOUT_DEFAULT,
            kube_run_as_non_root=env.get("WEIR_KUBE_RUN_AS_NON_ROOT", "").lower()
            in ("1", "true", "yes"),
            kube_helper_image=env.get("WEIR_KUBE_HELPER_IMAGE") or "weir:latest",
            kube_data_secret=env.get("WEIR_KUBE_DATA_SECRET") or "weir-task-nats",
            kube_allowed_secrets=_names(env, "WEIR_KUBE_ALLOWED_SECRETS"),
            kube_allowed_service_accounts=_names(env, "WEIR_KUBE_ALLOWED_SERVICE_ACCOUNTS"),
            kube_allowed_annotations=_names(env, "WEIR_KUBE_ALLOWED_ANNOTATIONS"),
            kube_allowed_node_selectors=_names(env, "WEIR_KUBE_ALLOWED_NODE_SELECTORS"),
            kube_allowed_tolerations=_names(env, "WEIR_KUBE_ALLOWED_TOLERATIONS"),
            **s3,
        )

    @property
    def artifacts_s3(self) -> S3Storage | None:
        """The S3-compatible storage `artifacts_url` selects (checked: a bad value raises
        ConfigError); None: artifacts stay in the NATS Object Store."""
        return s3_storage(
            artifacts_url=self.artifacts_url,
            s3_endpoint_url=self.s3_endpoint_url,
            s3_region=self.s3_region,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
        )


def _secret_value(env: dict[str, str], name: str) -> str:
    """The value of `name`, or the content of the file `name`_FILE names (without the one
    line end `echo` adds): a file keeps the secret out of every process's arguments and
    environment."""
    path = env.get(f"{name}_FILE", "")
    if not path:
        return env.get(name, "")
    if env.get(name):
        raise ConfigError(f"{name} and {name}_FILE are both set; choose one")
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read(SECRET_FILE_MAX + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"{name}_FILE={path!r} cannot be read: {reason}") from None
    value = value.removesuffix("\n").removesuffix("\r")
    if not value or len(value) > SECRET_FILE_MAX or "\n" in value:
        raise ConfigError(
            f"{name}_FILE={path!r} must hold one line of at most {SECRET_FILE_MAX} characters"
        )
    return value


SECRET_FILE_MAX = 4096
"""The longest password or token read from a file."""


@dataclass(frozen=True)
class NatsSecurity:
    """How every process authenticates to NATS and protects the connection (all optional).

    `WEIR_NATS_USER`/`WEIR_NATS_PASSWORD`, `WEIR_NATS_TOKEN`, `WEIR_NATS_CREDS` (a `.creds`
    file: JWT + NKey seed), `WEIR_NATS_NKEY_SEED` (a file holding an NKey seed);
    `WEIR_NATS_PASSWORD_FILE` and `WEIR_NATS_TOKEN_FILE` name a file holding the password or
    the token instead (a Kubernetes Secret volume, a file only its owner reads); and TLS:
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
            password=_secret_value(env, "WEIR_NATS_PASSWORD"),
            token=_secret_value(env, "WEIR_NATS_TOKEN"),
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
