"""`Task`: a function registered with `@flow.task`, and how its keyword arguments become a
`TaskSpec`'s settings (read as a spec file's would be, by the scheduler's own checks)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, ParamSpec, TypedDict, TypeVar

import msgspec
from weir_proto.conditions import Expr
from weir_proto.spec import EnvVar, KubernetesOptions, Resources, RetryPolicy, TaskSpec, Trigger
from weir_proto.validation import check_value

from weir.sdk.serializers import Serializer

if TYPE_CHECKING:
    from weir.sdk.flow import Flow

P = ParamSpec("P")
R = TypeVar("R")

FLOW_STATUS_PARAM = "flow_status"
"""The parameter of an on-exit task's function that gets the flow's outcome
(`succeeded`, `failed`, or `cancelled` after a cancel; WEIR_FLOW_STATUS in a task
process)."""


class TaskOptions(TypedDict, total=False):
    """The settings every task takes (see `Flow.task`); the on-exit task takes only these."""

    name: str | None
    retry: int | RetryPolicy | Mapping[str, Any] | None
    timeout: float | str | None
    resources: Resources | Mapping[str, Any] | None
    priority: int | None
    queue: str | None
    image: str | None
    env: Mapping[str, str | Secret] | None
    serializer: str | Serializer | None
    kubernetes: KubernetesOptions | Mapping[str, Any] | None


class TaskDeclaration(TaskOptions, total=False):
    """What `Flow.task` takes: the settings every task takes, and how it is placed in the
    flow (its inputs, dependencies, mapping, trigger and condition)."""

    inputs: Mapping[str, Task[..., Any] | str] | None
    depends: Sequence[Task[..., Any] | str]
    map_over: Mapping[str, Task[..., Any] | str] | None
    max_items: int | None
    trigger: Trigger | None
    when: str | None


class Secret(NamedTuple):
    """An env value read from a secret, e.g. `env={"TOKEN": Secret("api-token")}`."""

    name: str


class Task(Generic[P, R]):
    """A function registered with `@flow.task`. Calling it calls the function unchanged,
    so it stays unit-testable; the flow reads the rest of the attributes."""

    def __init__(
        self,
        flow: Flow,
        func: Callable[P, R],
        name: str,
        inputs: Mapping[str, Task[..., Any] | str],
        depends: Sequence[Task[..., Any] | str],
        serializer: Serializer,
        spec: TaskSpec,
        map_over: Mapping[str, Task[..., Any] | str] | None = None,
        condition: Expr | None = None,
        on_exit: bool = False,
    ) -> None:
        self.flow = flow
        self.condition = condition
        """`spec.when` parsed; a task it reads is a dependency, as an input is."""
        self.on_exit = on_exit
        """Whether this is the flow's on-exit task (`@flow.on_exit`)."""
        self.map_over = dict(map_over or {})
        """`{parameter: task}`: run once per item of the list `task` returns, the item
        passed as `parameter` (at most one entry)."""
        self.func = func
        self.name = name
        self.inputs = dict(inputs)
        self.depends = list(depends)
        self.serializer = serializer
        self.spec = spec
        """The task's own settings (retry, timeout, ...); `cmd`, `inputs` and `outputs`
        are filled in when the flow is built."""
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f'<task "{self.name}" of flow "{self.flow.name}">'

    @property
    def output(self) -> str:
        """This task's value as a `when` condition names it, `tasks.NAME.outputs.NAME` (an
        SDK task's one output is named after it): `when=f'{check.output} == "go"'`."""
        return f"tasks.{self.name}.outputs.{self.name}"

    def invoke(self, kwargs: Mapping[str, Any]) -> Any:
        """Call the function with these keyword arguments (an `async def` runs to its end)."""
        func: Callable[..., Any] = self.func
        if inspect.iscoroutinefunction(func):
            return asyncio.run(func(**kwargs))
        return func(**kwargs)


def task_name_for(func: Callable[..., Any]) -> str:
    """`extract_rows` -> `extract-rows`: task names are DNS-1123 labels (pod names)."""
    return func.__name__.lower().replace("_", "-").strip("-")


def spec_part(value: Any, kind: Any, path: str, where: str, problems: list[str]) -> Any:
    """`value` read as a spec file's `path` would be (`retry=3`, `timeout="10m"`, ...), by
    the same checks the scheduler runs; its problems are added to `problems`."""
    if value is None or isinstance(value, msgspec.Struct):
        return value
    plain = dict(value) if isinstance(value, Mapping) else value
    checked = check_value(plain, kind, path, where)
    if checked.errors:
        problems.extend(e.message for e in checked.errors)
        return None
    return msgspec.convert(checked.value, kind)


def resources_of(value: Resources | Mapping[str, Any] | None) -> Resources | None:
    if value is None or isinstance(value, Resources):
        return value
    if value and set(value) <= {"requests", "limits"}:
        return msgspec.convert(dict(value), Resources)
    return Resources(requests={k: str(v) for k, v in value.items()})


def env_vars(values: Mapping[str, str | Secret]) -> list[EnvVar]:
    return [
        EnvVar(name=k, from_secret=v.name) if isinstance(v, Secret) else EnvVar(name=k, value=v)
        for k, v in values.items()
    ]
