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


class FlowSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A flow: a named DAG of tasks. `id` may be chosen by the client (DNS-1123 label)."""

    name: str
    tasks: list[TaskSpec]
    id: str | None = None
