"""The flow spec: what a user submits (JSON on the wire, YAML from the CLI).

A superset of flowmium's format, so flowmium flow files are accepted unchanged.
Structural checks (types, unknown fields, every problem at once) are done by
`weir_proto.validation`, which also reads the shorthands a person writes: `retry: 3` for
`retry: {max_attempts: 3}` and durations like `10m` wherever a field is a `Duration`. The
planner (`weir_scheduler.planner`) checks the graph and the names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

MAP_ITEMS_ADMITTED = 10_000
"""The widest map a flow admits under the default limit, beside `OTHER_TASKS_ADMITTED`."""
OTHER_TASKS_ADMITTED = 100
"""The tasks a flow may have beside a map of `MAP_ITEMS_ADMITTED` items (the mapped task
itself is one of them) under the default limit."""
MAX_TASKS_DEFAULT = MAP_ITEMS_ADMITTED + OTHER_TASKS_ADMITTED
"""Most tasks a flow may have, its mapped tasks' instances counted with the rest, unless the
scheduler's WEIR_MAX_TASKS says otherwise: 10,100, so a task mapped over 10,000 items fits
in a flow with up to 99 other tasks."""
MAX_SUBMIT_BYTES_DEFAULT = 4 * 1024 * 1024
"""The largest submit a scheduler accepts unless its WEIR_MAX_SUBMIT_BYTES says otherwise."""

DURATION_FORM = "duration"
Duration = Annotated[
    float,
    msgspec.Meta(
        description="Seconds.",
        extra_json_schema={"x-weir-form": DURATION_FORM},
    ),
]
"""Seconds. On input also a string with a unit (`90s`, `10m`, `2h`, `1d`); always a number
once decoded, so events and the scheduler only ever see seconds."""


class EnvVar(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One environment variable: a literal `value`, or `fromSecret` naming a secret."""

    name: str
    value: str | None = None
    from_secret: str | None = msgspec.field(default=None, name="fromSecret")


class Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Place the output named `from` (of an upstream task) at `path` before the task runs."""

    from_: str = msgspec.field(name="from")
    path: str


class Output(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """After the task succeeds, the file at `path` becomes the output `name`."""

    name: str
    path: str


class Resources(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Kubernetes resource requests and limits, e.g. `{"cpu": "500m", "memory": "1Gi"}`."""

    requests: dict[str, str] = msgspec.field(default_factory=dict)
    limits: dict[str, str] = msgspec.field(default_factory=dict)


class Toleration(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = msgspec.field(default=None, name="tolerationSeconds")


class KubernetesOptions(
    msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True
):
    """Pod settings used by the Kubernetes executor (ignored by the local one)."""

    resources: Resources | None = None
    node_selector: dict[str, str] = msgspec.field(default_factory=dict, name="nodeSelector")
    tolerations: list[Toleration] = msgspec.field(default_factory=list)
    service_account_name: str | None = msgspec.field(default=None, name="serviceAccountName")
    image_pull_secrets: list[str] = msgspec.field(default_factory=list, name="imagePullSecrets")
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    run_as_non_root: bool | None = msgspec.field(default=None, name="runAsNonRoot")
    """Refuse to start the container as root (default: the runner's WEIR_KUBE_RUN_AS_NON_ROOT)."""
    run_as_user: int | None = msgspec.field(default=None, name="runAsUser")
    automount_service_account_token: bool = msgspec.field(
        default=False, name="automountServiceAccountToken"
    )
    """Mount the service account's API token into the pod (off unless asked)."""


class Backoff(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Delay before retry n (n = 1 after the first failure), in seconds:

    constant `base`; linear `base + factor*(n-1)`; polynomial `base * n**power`;
    exponential `base * factor**(n-1)`; then jitter (relative: ±25% of the delay; absolute:
    plus up to `base` seconds), then clamped to [`min`, `max`].
    """

    strategy: Literal["constant", "linear", "polynomial", "exponential"] = "exponential"
    base: Duration = 1.0
    factor: float | None = None
    power: float | None = None
    min: Duration = 0.0
    max: Duration = 300.0
    jitter: Literal["relative", "absolute"] | None = "relative"


class RetryPolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """How many attempts a task gets (snoozes do not count) and how long to wait between."""

    max_attempts: int = 3
    backoff: Backoff = msgspec.field(default_factory=Backoff)


class TaskDefaults(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Per-flow defaults for every task that does not set its own."""

    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    priority: int | None = None
    queue: str | None = None
    image: str | None = None


class Unique(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """At most one flow per `key` among flows in `statuses` created within `window` seconds."""

    key: str
    window: Duration | None = None
    statuses: list[str] | None = None
    on_conflict: Literal["do_nothing", "replace", "reject"] = "do_nothing"


Trigger = Literal[
    "all_success", "all_done", "all_failed", "one_failed", "one_success", "none_failed"
]
"""When a task may run, given how its dependencies ended (see docs/jobs.md)."""

ParamType = Literal["string", "int", "float", "bool", "json"]


class ParamSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A flow parameter: its type, and a default (without one, a submit must give it). In a
    spec a bare value stands for `{default: value}` with the value's type."""

    type: ParamType = "string"
    default: Any | None = None
    description: str | None = None


class MapSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Run the task once per item of a JSON list: `over` names an output of one of the task's
    dependencies (as an input's `from` does). Instance i is the task `NAME[i]`, with its item
    in `WEIR_ITEM` (JSON) and in place of `{{ item }}`."""

    over: str
    max_items: int | None = None
    """Refuse (fail the task) a list longer than this; the flow's WEIR_MAX_TASKS applies too."""


class TaskSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """One task: a container image and an argv, run once its dependencies ended as its
    `trigger` asks (by default: all succeeded) and its `when` condition holds."""

    name: str
    cmd: list[str]
    image: str | None = None
    depends: list[str] = msgspec.field(default_factory=list)
    env: list[EnvVar] = msgspec.field(default_factory=list)
    inputs: list[Input] = msgspec.field(default_factory=list)
    outputs: list[Output] = msgspec.field(default_factory=list)
    queue: str | None = None
    """Runner pool (default: the flow's default queue, else `default`)."""
    timeout: Duration | None = None
    """Seconds an attempt may run before it is killed (and fails with error type timeout)."""
    retry: RetryPolicy | None = None
    priority: int | None = None
    """0 is the highest; tasks with a lower number are dispatched first when capacity is short."""
    kubernetes: KubernetesOptions | None = None
    trigger: Trigger = "all_success"
    """How the dependencies must have ended for the task to run; otherwise it is skipped."""
    when: str | None = None
    """A condition over `params.NAME`, `tasks.NAME.status` and `tasks.NAME.exit_code` of
    upstream tasks: false skips the task (e.g. `params.env == "prod"`)."""
    map: MapSpec | None = None
    """Fan out over a JSON list an upstream task produced (see `MapSpec`)."""


def retry_policy(task: TaskSpec, defaults: TaskDefaults | None) -> RetryPolicy:
    """The retry policy `task` runs under: its own, else its flow's `defaults`', else the
    default one (3 attempts). The planner and `run_local()` both ask this."""
    return task.retry or (defaults.retry if defaults is not None else None) or RetryPolicy()


class FlowSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A flow: a named DAG of tasks. `id` may be chosen by the client (DNS-1123 label)."""

    name: str
    tasks: list[TaskSpec]
    id: str | None = None
    defaults: TaskDefaults | None = None
    fail_fast: bool = False
    """On a task's final failure, also cancel running siblings (default: let them finish)."""
    max_parallel: int | None = None
    """At most this many tasks of the flow dispatched or running at once."""
    scheduled_at: datetime | None = None
    delay: Duration | None = None
    """Start this many seconds after the submit (ignored when `scheduled_at` is set)."""
    priority: int = 100
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    unique: Unique | None = None
    params: dict[str, ParamSpec] = msgspec.field(default_factory=dict)
    """Declared parameters: `{{ params.NAME }}` in `cmd`, `env` values, `image` and artifact
    paths is replaced by the value, and every task gets it as `WEIR_PARAM_<NAME>`."""
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    """The values given for `params` at submit (`weir submit -p NAME=VALUE`)."""
    on_exit: TaskSpec | None = None
    """A task run last, whatever became of the others, with the flow's outcome in
    `WEIR_FLOW_STATUS` (`succeeded` or `failed`)."""
