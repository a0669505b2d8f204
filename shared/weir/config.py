"""One config loader for every process: settings come from `WEIR_*` environment variables."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from weir_proto.spec import MAX_SUBMIT_BYTES_DEFAULT, MAX_TASKS_DEFAULT

from weir.nats_security import NatsSecurity
from weir.s3_storage import S3Storage, aws_settings, s3_storage
from weir.setting import (
    ConfigError,
    duration,
    flag,
    host_port,
    key32,
    limits,
    names,
    nats_urls,
    number,
    one_of,
    postgres_url,
    read,
    setting,
    size,
    size_or_off,
    text,
    uid_range_or_off,
    upper,
    whole,
    whole_or_off,
)
from weir.supervisor import LOOP_BACKOFF_MAX_DEFAULT, LOOP_BACKOFF_MIN, LOOP_FAILURES_MAX_DEFAULT

__all__ = ["ConfigError", "NatsSecurity", "Settings"]

EXECUTORS = ("local", "noop", "kubernetes")
NATS_URL_DEFAULT = "nats://127.0.0.1:4222"
WEB_LISTEN_DEFAULT = ("127.0.0.1", 8080)

TASK_USER_DEFAULT = "nobody"
"""The user a root runner's local tasks run as when it hands out no uids of their own (a
runner that is not root runs them as itself)."""
TASK_UIDS_DEFAULT = (2_000_000_000, 2_000_065_535)
"""65,536 uids no user or system service of a usual machine has (systemd leaves
1879048192-2147352575 unused; container id maps usually start at 100000)."""
TASK_MEMORY_MAX_DEFAULT = 4 * 1024**3
TASK_PIDS_MAX_DEFAULT = 1024
TASK_LOG_MAX_DEFAULT = 10 * 1024**2
TASK_LOG_MAX_MIN = 2048
TASK_TIMEOUT_DEFAULT = 24 * 3600.0
"""The timeout of a task that sets none (local executor)."""

ARTIFACTS_BUCKET_DEFAULT = "weir-artifacts"
STARTED_DELAY_DEFAULT = 0.1
LEASE_DEFAULT = 60.0
DEADLINE_GRACE_DEFAULT = 30.0
KUBE_NAMESPACE_DEFAULT = "default"
KUBE_IMAGE_PULL_TIMEOUT_DEFAULT = 120.0
KUBE_UNSCHEDULABLE_TIMEOUT_DEFAULT = 300.0
KUBE_POD_TTL_DEFAULT = 0.0

COMMANDS_MAX_MSGS_DEFAULT = 1_000_000
COMMANDS_MAX_BYTES_DEFAULT = 1024**3
"""WEIR_COMMANDS keeps commands a week, also those already recorded (so a submit outlives a
scheduler outage): the limits count a week of submits. Past them a publish to `weir.cmd.>`
is refused, and nothing already accepted is dropped."""


def _task_log_max(name: str, raw: str) -> int:
    value = size_or_off(name, raw)
    if value is None or value < TASK_LOG_MAX_MIN:
        raise ConfigError(f"{name} must be a size of at least 2K (task logs are always capped)")
    return value


def _queues(name: str, raw: str) -> tuple[str, ...]:
    return names(name, raw) or ("default",)


def _allow_list(env: str, what: str) -> Any:
    """A comma-separated allow-list of what a task's `kubernetes` section may ask for."""
    return setting(env, (), names, f"comma-separated {what}", shown="(none)")


@dataclass(frozen=True)
class Settings:
    """Every `WEIR_*` setting of the services, each declared once: its variable, default,
    parser and the line of the README's configuration table that documents it."""

    nats_url: str = setting(
        "WEIR_NATS_URL",
        NATS_URL_DEFAULT,
        nats_urls,
        "NATS server (all processes, and the CLI's `--nats-url`)",
        repr=False,  # may hold a password
    )
    database_url: str = setting(
        "WEIR_DATABASE_URL",
        "postgresql://postgres@127.0.0.1:5432/weir",
        postgres_url,
        "scheduler's Postgres (migrations run at start)",
        repr=False,  # may hold a password
    )
    executor: str = setting(
        "WEIR_EXECUTOR",
        "local",
        one_of(EXECUTORS, "an executor"),
        "runner executor: `local` (processes), `kubernetes` (pods, see "
        "[docs/kubernetes.md](docs/kubernetes.md)) or `noop` (reports success without running "
        "anything: dry runs, benchmarks)",
    )
    runner_concurrency: int = setting(
        "WEIR_RUNNER_CONCURRENCY", 8, whole(), "attempts one runner runs at once"
    )
    runner_queues: tuple[str, ...] = setting(
        "WEIR_RUNNER_QUEUES",
        ("default",),
        _queues,
        "comma-separated queues this runner serves",
        shown="`default`",
    )
    runner_dir: str = setting(
        "WEIR_RUNNER_DIR", ".weir/attempts", text, "attempt directories (logs, results, files)"
    )
    runner_keep: float = setting(
        "WEIR_RUNNER_KEEP",
        7 * 24 * 3600.0,
        duration,
        "how long a finished attempt's directory is kept before the runner deletes it",
        shown="`7d`",
    )
    """A week: long past any redelivery of the attempt's dispatch (which is what the
    recorded result answers), long enough to read its files when something went wrong."""
    runner_name: str = setting(
        "WEIR_RUNNER_NAME",
        None,
        text,
        "reported in `task_started`",
        shown="host name",
        factory=socket.gethostname,
    )
    runner_task_user: str = setting(
        "WEIR_RUNNER_TASK_USER",
        TASK_USER_DEFAULT,
        text,
        "user (name or uid) a root runner runs local tasks as when `WEIR_RUNNER_TASK_UIDS` is "
        "`off` (`root`: unisolated, whatever the range; a runner that is not root runs them as "
        "itself)",
    )
    runner_task_uids: tuple[int, int] | None = setting(
        "WEIR_RUNNER_TASK_UIDS",
        TASK_UIDS_DEFAULT,
        uid_range_or_off,
        "uids a root runner runs local tasks as, one of its own per running attempt and "
        "shared with no other at the same time on the machine, so no task can read another's "
        "processes or files (`off`: every task runs as `WEIR_RUNNER_TASK_USER`); no user of "
        "the machine may have one of them",
        shown="`2000000000-2000065535`",
    )
    task_memory_max: int | None = setting(
        "WEIR_TASK_MEMORY_MAX",
        TASK_MEMORY_MAX_DEFAULT,
        size_or_off,
        "memory of one local attempt (cgroup `memory.max`, else `RLIMIT_AS` per process); "
        "`off`: no limit",
        shown="`4G`",
    )
    task_pids_max: int | None = setting(
        "WEIR_TASK_PIDS_MAX",
        TASK_PIDS_MAX_DEFAULT,
        whole_or_off,
        "processes of one local attempt (cgroup `pids.max`, else `RLIMIT_NPROC` of the task "
        "user); `off`: no limit",
    )
    task_cpu_seconds: int | None = setting(
        "WEIR_TASK_CPU_SECONDS",
        None,
        whole_or_off,
        "CPU seconds per process of a local attempt (`RLIMIT_CPU`)",
        shown="`off`",
    )
    task_log_max: int = setting(
        "WEIR_TASK_LOG_MAX",
        TASK_LOG_MAX_DEFAULT,
        _task_log_max,
        "stdout plus stderr kept on the runner's disk per local attempt (half each; the end is "
        "kept)",
        shown="`10M`",
    )
    task_timeout: float = setting(
        "WEIR_TASK_TIMEOUT",
        TASK_TIMEOUT_DEFAULT,
        duration,
        "the longest a local task runs: the timeout of one that sets none, and the ceiling "
        "of a longer `timeout`",
        shown="`24h`",
    )
    max_tasks: int = setting(
        "WEIR_MAX_TASKS",
        MAX_TASKS_DEFAULT,
        whole(),
        "most tasks in one flow, a mapped task's instances counted too (the default fits a map "
        "over 10,000 items beside 99 other tasks); a bigger submit is rejected, a bigger "
        "expansion fails the mapped task",
    )
    max_submit_bytes: int = setting(
        "WEIR_MAX_SUBMIT_BYTES",
        MAX_SUBMIT_BYTES_DEFAULT,
        whole(),
        "largest submit the scheduler accepts",
    )
    dispatch_ack_wait: float = setting(
        "WEIR_DISPATCH_ACK_WAIT",
        30.0,
        number(1.0),
        "seconds of runner silence before its attempt goes to another runner",
        shown="`30`",
    )
    scheduler_ack_wait: float = setting(
        "WEIR_SCHEDULER_ACK_WAIT",
        15.0,
        number(1.0),
        "seconds before commands held by a dead scheduler are redelivered",
        shown="`15`",
    )
    shutdown_grace: float = setting(
        "WEIR_SHUTDOWN_GRACE",
        10.0,
        number(),
        "seconds a stopping runner lets attempts finish before handing them back",
        shown="`10`",
    )
    artifacts_bucket: str = setting(
        "WEIR_ARTIFACTS_BUCKET",
        ARTIFACTS_BUCKET_DEFAULT,
        text,
        "Object Store bucket of task outputs",
    )
    artifacts_url: str = setting(
        "WEIR_ARTIFACTS_URL",
        "",
        text,
        "`s3://BUCKET/PREFIX`: task outputs go to S3-compatible storage instead, object "
        "`<PREFIX>/<flow>/<output>` (see [docs/data.md](docs/data.md#s3-compatible-storage))",
        shown="none (NATS Object Store)",
    )
    """Checked by `artifacts_s3`; empty: the NATS Object Store bucket `artifacts_bucket`."""
    s3_endpoint_url: str = setting(
        "WEIR_S3_ENDPOINT_URL",
        "",
        text,
        "S3 API endpoint of MinIO, R2, Ceph, … (`http://minio:9000`)",
        shown="AWS",
    )
    # The standard AWS variables, so boto3's documentation applies as it is
    # (`weir.s3_storage.aws_settings`).
    s3_region: str = ""
    aws_access_key_id: str = ""
    aws_secret_access_key: str = field(default="", repr=False)
    aws_session_token: str = field(default="", repr=False)
    secret_key: bytes | None = setting(
        "WEIR_SECRET_KEY",
        None,
        key32,
        "key that encrypts stored secrets (`weir secret keygen` makes one)",
        shown="none",
        repr=False,
    )
    """The runner takes it out of its environment at start (`weir.secrets.take_credentials`)."""
    heartbeat_interval: float = setting(
        "WEIR_HEARTBEAT_INTERVAL",
        5.0,
        number(0.1),
        "seconds between a runner's heartbeats",
        shown="`5`",
    )
    started_delay: float = setting(
        "WEIR_STARTED_DELAY",
        STARTED_DELAY_DEFAULT,
        number(0.0),
        "seconds a runner holds an attempt's `started` report: one that ends sooner sends "
        "one report, its start inside (`0`: always report the start at once)",
        shown="`0.1`",
    )
    lease: float = setting(
        "WEIR_LEASE",
        LEASE_DEFAULT,
        number(1.0),
        "seconds without a heartbeat before a running attempt is lost (and retried)",
        shown="`60`",
    )
    deadline_grace: float = setting(
        "WEIR_DEADLINE_GRACE",
        DEADLINE_GRACE_DEFAULT,
        number(),
        "seconds past a task's timeout before the scheduler declares its attempt lost",
        shown="`30`",
    )
    queue_limits: dict[str, int] = setting(  # noqa: RUF009 (a field with a default factory)
        "WEIR_QUEUE_LIMITS",
        None,
        limits,
        "global concurrency per queue, e.g. `gpu=4,default=200`; queued tasks are released by "
        "priority, then fairly across flows",
        shown="none",
        factory=dict,
    )

    # Fair sharing and limits (docs/jobs.md#fairness-and-limits).
    max_pending_flows: int = setting(
        "WEIR_MAX_PENDING_FLOWS",
        10_000,
        whole(),
        "flows not ended yet beyond which `weir.api.submit` (`weir submit`) answers `overloaded`",
    )
    submit_rate: float = setting(
        "WEIR_SUBMIT_RATE",
        50.0,
        number(0.01),
        "submits per second (sustained) per NATS connection on `weir.api.submit`; beyond, "
        "`rate_limited` with a `retry_after`",
        shown="`50`",
    )
    submit_burst: int = setting(
        "WEIR_SUBMIT_BURST",
        200,
        whole(),
        "submits at once (burst) per NATS connection on `weir.api.submit`",
    )
    commands_max_msgs: int = setting(
        "WEIR_COMMANDS_MAX_MSGS",
        COMMANDS_MAX_MSGS_DEFAULT,
        whole(),
        "messages the WEIR_COMMANDS stream holds (a week of commands); beyond, a publish to "
        "`weir.cmd.>` is refused",
    )
    commands_max_bytes: int = setting(
        "WEIR_COMMANDS_MAX_BYTES",
        COMMANDS_MAX_BYTES_DEFAULT,
        size,
        "bytes the WEIR_COMMANDS stream holds; beyond, a publish to `weir.cmd.>` is refused",
        shown="`1G`",
    )
    flow_dispatch_window: int = setting(
        "WEIR_FLOW_DISPATCH_WINDOW",
        16,
        whole(),
        "attempts per flow and queue handed to runners but not started yet; the rest wait, so "
        "one big flow cannot starve others ([docs/jobs.md](docs/jobs.md#fairness-and-limits))",
    )
    """Enough to keep runners busy between two round trips, few enough that another flow's
    task waits behind little."""
    prune_after: float | None = setting(
        "WEIR_PRUNE_AFTER",
        None,
        duration,
        "delete ended flows this long after they ended (`30d`, `12h`, seconds)",
        shown="never",
    )
    prune_interval: float = setting(
        "WEIR_PRUNE_INTERVAL",
        3600.0,
        number(1.0),
        "seconds between periodic prunes",
        shown="`3600`",
    )
    kube_namespace: str = setting(
        "WEIR_KUBE_NAMESPACE",
        KUBE_NAMESPACE_DEFAULT,
        text,
        "namespace of the kubernetes executor's pods (see "
        "[docs/kubernetes.md](docs/kubernetes.md))",
    )
    kube_config: str = setting(
        "WEIR_KUBECONFIG",
        "",
        text,
        "kubeconfig file of the kubernetes executor",
        shown="`KUBECONFIG`, else in-cluster, else `~/.kube/config`",
        fallback=("KUBECONFIG",),
    )
    kube_image_pull_timeout: float = setting(
        "WEIR_KUBE_IMAGE_PULL_TIMEOUT",
        KUBE_IMAGE_PULL_TIMEOUT_DEFAULT,
        number(1.0),
        "seconds a pod may fail to pull its image (or create its container) before its "
        "attempt fails",
        shown="`120`",
    )
    kube_unschedulable_timeout: float = setting(
        "WEIR_KUBE_UNSCHEDULABLE_TIMEOUT",
        KUBE_UNSCHEDULABLE_TIMEOUT_DEFAULT,
        number(1.0),
        "seconds a pod may stay unschedulable before its attempt fails",
        shown="`300`",
    )
    kube_run_as_non_root: bool = setting(
        "WEIR_KUBE_RUN_AS_NON_ROOT",
        False,
        flag,
        "pods refuse to run as root; a floor: a task asking for `runAsNonRoot: false` or "
        "`runAsUser: 0` is refused",
        shown="`false`",
    )
    kube_helper_image: str = setting(
        "WEIR_KUBE_HELPER_IMAGE",
        "weir:latest",
        text,
        "image (with weir installed) of the pods' artifact download/upload containers",
    )
    kube_data_secret: str = setting(
        "WEIR_KUBE_DATA_SECRET",
        "weir-task-nats",
        text,
        "Kubernetes Secret (in the pods' namespace) with `url` and a NATS user limited to the "
        "artifacts bucket, as `user` and `password` or as `creds`, that the artifact helper "
        "containers use",
    )

    # What a task's `kubernetes` section may ask for (the runner refuses the rest, see
    # docs/kubernetes.md): comma-separated allow-lists, all empty by default.
    kube_allowed_secrets: tuple[str, ...] = setting(
        "WEIR_KUBE_ALLOWED_SECRETS",
        (),
        names,
        "comma-separated Kubernetes Secrets a `fromSecret` may read directly (weir's secret "
        "store: always); what a task's `kubernetes` section asks for beyond this and the "
        "allow-lists below fails the attempt as `refused` "
        "([docs/kubernetes.md](docs/kubernetes.md))",
        shown="(none)",
    )
    kube_allowed_service_accounts: tuple[str, ...] = _allow_list(
        "WEIR_KUBE_ALLOWED_SERVICE_ACCOUNTS", "service accounts a task may run as"
    )
    kube_allowed_annotations: tuple[str, ...] = _allow_list(
        "WEIR_KUBE_ALLOWED_ANNOTATIONS", "annotation keys a task may set"
    )
    kube_allowed_node_selectors: tuple[str, ...] = _allow_list(
        "WEIR_KUBE_ALLOWED_NODE_SELECTORS", "node label keys a task's `nodeSelector` may use"
    )
    kube_allowed_tolerations: tuple[str, ...] = _allow_list(
        "WEIR_KUBE_ALLOWED_TOLERATIONS", "taint keys a task may tolerate"
    )
    kube_pod_ttl: float = setting(
        "WEIR_KUBE_POD_TTL",
        KUBE_POD_TTL_DEFAULT,
        number(),
        "seconds a finished pod is kept after its log was saved (0: deleted at once)",
        shown="`0`",
    )
    loop_failures_max: int = setting(
        "WEIR_LOOP_FAILURES_MAX",
        LOOP_FAILURES_MAX_DEFAULT,
        whole(),
        "failures in a row of one background loop after which the process exits 1 (to be "
        "restarted)",
    )
    loop_backoff_max: float = setting(
        "WEIR_LOOP_BACKOFF_MAX",
        LOOP_BACKOFF_MAX_DEFAULT,
        number(LOOP_BACKOFF_MIN),
        "longest pause, in seconds, before a failing background loop runs again (from 0.1 s, "
        "doubling)",
        shown="`30`",
    )
    web_listen: tuple[str, int] = setting(
        "WEIR_WEB_LISTEN",
        WEB_LISTEN_DEFAULT,
        host_port,
        "where `weir-web` (the HTTP API, [docs/http.md](docs/http.md)) listens",
        shown="`127.0.0.1:8080`",
    )
    web_tokens: str = setting(
        "WEIR_WEB_TOKENS",
        "",
        text,
        "file of `TOKEN ROLE` lines (`viewer`, `operator`, `admin`) for `weir-web`, re-read "
        "when it changes; without it, `weir-web` refuses any address but loopback",
        shown="none",
    )
    web_session_key_file: str = setting(
        "WEIR_WEB_SESSION_KEY_FILE",
        "",
        text,
        "file holding the key that signs `weir-web`'s session cookies (32 bytes, URL-safe "
        "base64: `weir secret keygen`); every replica needs the same one. Required with "
        "`WEIR_WEB_TOKENS` on an address but loopback; without it a random key is made at "
        "start, and a restart logs browsers out",
        shown="none",
    )
    log_level: str = setting(
        "WEIR_LOG_LEVEL",
        "INFO",
        upper,
        "both services log one JSON object per line on stderr; `DEBUG` is weir's own (NATS, "
        "boto3, urllib3 and the Kubernetes client stay at WARNING)",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every setting from `env` (default: the process environment); a bad value raises
        ConfigError naming its variable."""
        env = dict(os.environ if env is None else env)
        aws: dict[str, Any] = aws_settings(env)
        settings = cls(**read(cls, env), **aws)
        _ = settings.artifacts_s3  # a bad value fails here, with the others, not at first use
        return settings

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
