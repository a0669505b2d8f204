"""The flow spec: what a user submits (JSON on the wire, YAML from the CLI).

A superset of flowmium's format, so flowmium flow files are accepted unchanged.
Structural checks (types, unknown fields) are done by msgspec when decoding; the planner
(`weir_scheduler.planner`) checks the graph and the names.
"""

from __future__ import annotations

import msgspec

from weir_proto.subjects import DEFAULT_QUEUE


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


class TaskSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """One task: a container image and an argv, run once its own dependencies succeeded."""

    name: str
    cmd: list[str]
    image: str | None = None
    depends: list[str] = msgspec.field(default_factory=list)
    env: list[EnvVar] = msgspec.field(default_factory=list)
    inputs: list[Input] = msgspec.field(default_factory=list)
    outputs: list[Output] = msgspec.field(default_factory=list)
    queue: str = DEFAULT_QUEUE
    timeout: float | None = None
    """Seconds an attempt may run before it is killed (and fails with error type timeout)."""
    kubernetes: KubernetesOptions | None = None


class FlowSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A flow: a named DAG of tasks. `id` may be chosen by the client (DNS-1123 label)."""

    name: str
    tasks: list[TaskSpec]
    id: str | None = None
