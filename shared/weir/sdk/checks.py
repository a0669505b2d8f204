"""Build-time checks of an SDK flow: everything the scheduler would reject, and more that
only Python knows (parameters without inputs, incompatible type hints), found before submit.

All problems are reported at once, each naming the task and what to do about it.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weir_proto.conditions import ref_problem, refs
from weir_proto.errors import WeirException
from weir_proto.ids import DNS1123_LABEL_RULE, is_dns_label

from weir.sdk.serializers import (
    BytesSerializer,
    JsonSerializer,
    PickleSerializer,
    TextSerializer,
)
from weir.sdk.task import FLOW_STATUS_PARAM

if TYPE_CHECKING:
    from weir.sdk.flow import Flow
    from weir.sdk.task import Task

# PEP 484's numeric tower: an int is acceptable where a float is expected, and so on.
_PROMOTIONS: dict[type, tuple[type, ...]] = {float: (int,), complex: (int, float)}


class FlowDefinitionError(WeirException, ValueError):
    """A flow that cannot be built; `problems` lists every reason."""

    def __init__(self, flow: str, problems: list[str]) -> None:
        self.flow = flow
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f'flow "{flow}" is not valid:\n{lines}')


def find_problems(flow: Flow) -> list[str]:
    problems: list[str] = list(flow.problems)
    if not flow.tasks:
        problems.append("has no tasks; decorate functions with @flow.task")
    names = ", ".join(t.name for t in flow.tasks)
    seen: dict[str, Task[..., Any]] = {}
    for task in flow.tasks:
        where = f'task "{task.name}" ({_describe(task.func)})'
        if not is_dns_label(task.name):
            problems.append(
                f"{where}: name is not a DNS-1123 label ({DNS1123_LABEL_RULE}); "
                'pass @flow.task(name="...")'
            )
        if task.name in seen:
            problems.append(
                f"{where}: name is already used by {_describe(seen[task.name].func)}; "
                'pass @flow.task(name="...") to one of them'
            )
        seen.setdefault(task.name, task)
        problems.extend(_input_problems(flow, task, where, names))
        problems.extend(_condition_problems(flow, task, where, names))
    problems.extend(_on_exit_problems(flow))
    if not problems:
        cycle = _find_cycle(flow)
        if cycle:
            problems.append(f"has a cycle: {' -> '.join(cycle)}")
    if not problems:
        for task in flow.tasks:
            problems.extend(_type_problems(flow, task))
    return problems


def topological_order(flow: Flow) -> list[Task[..., Any]]:
    """Tasks with every task after its upstream tasks, ties in declaration order."""
    done: list[Task[..., Any]] = []
    remaining = list(flow.tasks)
    while remaining:
        ready = next(
            t for t in remaining if all(any(u is d for d in done) for u in flow.upstream(t))
        )
        done.append(ready)
        remaining.remove(ready)
    return done


def _describe(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__qualname__', repr(func))}()"


def _ref_problem(flow: Flow, ref: object, what: str, names: str) -> str | None:
    from weir.sdk.task import Task

    if flow.resolve(ref) is not None:  # type: ignore[arg-type]
        return None
    if isinstance(ref, Task):
        return (
            f'{what} is task "{ref.name}" of flow "{ref.flow.name}", not of this flow '
            f"(tasks: {names})"
        )
    if isinstance(ref, str):
        return f'{what} names task "{ref}", which does not exist (tasks: {names})'
    return (
        f"{what} is {ref!r}, which is not a task of this flow; pass a function decorated "
        f"with @flow.task or its name (tasks: {names})"
    )


def _condition_problems(flow: Flow, task: Task[..., Any], where: str, names: str) -> list[str]:
    """What the planner would refuse in `when` (in its words), and outputs a condition
    cannot read: a task it names becomes a dependency, so it must be one of this flow's
    tasks, not the task itself nor the on-exit task, and write JSON or text."""
    if task.condition is None:
        return []
    problems: list[str] = []
    tasks = {t.name: t for t in flow.tasks}
    outputs = {name: name for name in tasks}  # an SDK task's one output is named after it
    for ref in refs(task.condition):
        name = ref.path[1]
        producer = tasks.get(name) if ref.path[0] == "tasks" else None
        if ref.path[0] == "tasks" and producer is None:
            problems.append(
                f'{where}: when: reads tasks.{name}, but task "{name}" does not exist '
                f"(tasks: {names})"
            )
            continue
        problem = ref_problem(ref, flow.params, tasks, outputs)
        if problem is not None:
            hint = f" (an SDK task's one output is named after it: tasks.{name}.outputs.{name})"
            problems.append(f"{where}: when: {problem}{hint if len(ref.path) == 4 else ''}")
        elif producer is task:
            problems.append(f"{where}: when: reads tasks.{name}, the task itself")
        elif producer is not None and producer.on_exit:
            problems.append(
                f"{where}: when: reads tasks.{name}, the on-exit task, which runs after every "
                "other task"
            )
        elif producer is not None and len(ref.path) == 4 and _unreadable(producer):
            problems.append(
                f'{where}: when: reads the output of task "{name}", whose serializer is '
                f"{_serializer_name(producer)}; a condition reads an output as JSON or text: "
                f'pass serializer="json" to task "{name}"'
            )
    return problems


def _unreadable(task: Task[..., Any]) -> bool:
    """Whether a condition cannot make sense of `task`'s output."""
    return isinstance(task.serializer, PickleSerializer | BytesSerializer)


def _on_exit_problems(flow: Flow) -> list[str]:
    """One on-exit task, which no task may wait for, taking no inputs: only flow
    parameters and `flow_status`."""
    problems: list[str] = []
    on_exit = [t for t in flow.tasks if t.on_exit]
    for extra in on_exit[1:]:
        problems.append(
            f'task "{extra.name}" ({_describe(extra.func)}): is a second on-exit task (the '
            f'first is "{on_exit[0].name}"); a flow has one'
        )
    for task in on_exit:
        where = f'task "{task.name}" ({_describe(task.func)})'
        for param, declared in inspect.signature(task.func).parameters.items():
            required = declared.default is inspect.Parameter.empty and declared.kind not in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            )
            if required and param != FLOW_STATUS_PARAM and param not in flow.params:
                problems.append(
                    f'{where}: parameter "{param}" is neither a flow parameter nor '
                    f"{FLOW_STATUS_PARAM}; an on-exit task takes no inputs (the tasks it would "
                    "read may not have succeeded)"
                )
        for other in flow.tasks:
            refs_to = [*other.inputs.values(), *other.depends, *other.map_over.values()]
            if other is not task and any(flow.resolve(r) is task for r in refs_to):
                problems.append(
                    f'task "{other.name}" ({_describe(other.func)}): waits for the on-exit '
                    f'task "{task.name}", which runs after every other task; remove it'
                )
    return problems


def _map_problems(flow: Flow, task: Task[..., Any], where: str, names: str) -> list[str]:
    """A mapped task maps over one json-serialized task's list, into one of its parameters,
    and writes json itself (its runs' values become one JSON list)."""
    if not task.map_over:
        return []
    problems: list[str] = []
    if len(task.map_over) != 1:
        problems.append(
            f"{where}: map_over has {len(task.map_over)} entries; give exactly one "
            '{"parameter": <upstream task>}'
        )
    params = inspect.signature(task.func).parameters
    for param, ref in task.map_over.items():
        problem = _ref_problem(flow, ref, f'map_over "{param}"', names)
        producer = flow.resolve(ref)
        if problem:
            problems.append(f"{where}: {problem}")
        elif producer is task:
            problems.append(f'{where}: map_over "{param}" comes from the task itself')
        elif producer is not None and not isinstance(producer.serializer, JsonSerializer):
            problems.append(
                f'{where}: map_over "{param}" comes from task "{producer.name}", whose '
                f"serializer is {_serializer_name(producer)}; the scheduler reads the list as "
                f'JSON: pass serializer="json" to task "{producer.name}"'
            )
        if param not in params:
            problems.append(
                f'{where}: map_over "{param}" is not a parameter of the function '
                f"(parameters: {', '.join(params) or 'none'})"
            )
        elif param in task.inputs:
            problems.append(f'{where}: parameter "{param}" is both an input and map_over')
    if not isinstance(task.serializer, JsonSerializer):
        problems.append(
            f"{where}: a mapped task's values are gathered as JSON; its serializer is "
            f'{_serializer_name(task)}: drop serializer= or pass serializer="json"'
        )
    return problems


def _serializer_name(task: Task[..., Any]) -> str:
    return str(getattr(task.serializer, "name", type(task.serializer).__name__))


def _input_problems(flow: Flow, task: Task[..., Any], where: str, names: str) -> list[str]:
    problems: list[str] = _map_problems(flow, task, where, names)
    params = inspect.signature(task.func).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for param, ref in task.inputs.items():
        problem = _ref_problem(flow, ref, f'input "{param}"', names)
        if problem:
            problems.append(f"{where}: {problem}")
        elif flow.resolve(ref) is task:
            problems.append(f'{where}: input "{param}" comes from the task itself')
        declared = params.get(param)
        if declared is None and not takes_any:
            problems.append(
                f'{where}: input "{param}" is not a parameter of the function '
                f"(parameters: {', '.join(params) or 'none'})"
            )
        elif declared is not None and declared.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.VAR_POSITIONAL,
        ):
            problems.append(
                f'{where}: parameter "{param}" cannot be passed by keyword, so it cannot be '
                "an input; drop the '/' or '*' before it"
            )
    for param, declared in params.items():
        required = declared.default is inspect.Parameter.empty and declared.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        if (
            required
            and not task.on_exit
            and param not in task.inputs
            and param not in flow.params
            and param not in task.map_over
        ):
            problems.append(
                f'{where}: missing input for parameter "{param}"; add '
                f'inputs={{"{param}": <upstream task>}}, give it a default, or declare a '
                "flow parameter of that name with @flow.entry"
            )
    for ref in task.depends:
        problem = _ref_problem(flow, ref, "depends entry", names)
        if problem:
            problems.append(f"{where}: {problem}")
        elif flow.resolve(ref) is task:
            problems.append(f"{where}: depends on itself")
    return problems


def _find_cycle(flow: Flow) -> list[str]:
    state: dict[int, str] = {}  # id(task) -> "visiting" | "done"
    path: list[Task[..., Any]] = []

    def visit(task: Task[..., Any]) -> list[str]:
        state[id(task)] = "visiting"
        path.append(task)
        for upstream in flow.upstream(task):
            mark = state.get(id(upstream))
            if mark == "visiting":
                loop = [*path[path.index(upstream) :], upstream]
                return [t.name for t in reversed(loop)]  # in data-flow order
            if mark is None:
                found = visit(upstream)
                if found:
                    return found
        path.pop()
        state[id(task)] = "done"
        return []

    for task in flow.tasks:
        if id(task) not in state:
            found = visit(task)
            if found:
                return found
    return []


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations, or none when they cannot be resolved (then nothing is checked)."""
    try:
        return typing.get_type_hints(func)
    except Exception:
        return {}


def _type_problems(flow: Flow, task: Task[..., Any]) -> list[str]:
    problems: list[str] = []
    hints = _hints(task.func)
    where = f'task "{task.name}" ({_describe(task.func)})'
    returns = hints.get("return", Any)
    if isinstance(task.serializer, TextSerializer | BytesSerializer):
        wanted = str if isinstance(task.serializer, TextSerializer) else bytes
        if not _compatible(returns, wanted | None):
            problems.append(
                f"{where}: returns {_type_name(returns)} but its serializer "
                f"{task.serializer.name!r} writes {wanted.__name__}; change the annotation "
                "or the serializer"
            )
    for param, ref in task.inputs.items():
        producer = flow.resolve(ref)
        expected = hints.get(param)
        if producer is None or expected is None:
            continue
        given = _hints(producer.func).get("return", Any)
        if producer.map_over:
            given = list[given]  # type: ignore[valid-type]  # the runs' values, in order
        if not _compatible(given, expected):
            problems.append(
                f'{where}: parameter "{param}" expects {_type_name(expected)}, but task '
                f'"{producer.name}" ({_describe(producer.func)}) returns {_type_name(given)}'
            )
    return problems


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "None"
    return hint.__name__ if isinstance(hint, type) else repr(hint).replace("typing.", "")


def _members(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return list(typing.get_args(hint))
    return [hint]


def _plain_class(hint: Any) -> type | None:
    """`hint` as a class when it is one (or a generic alias of one, like `list[int]`)."""
    if hint is Any:
        return None
    if isinstance(hint, type) and not isinstance(hint, types.GenericAlias):
        return hint
    origin = typing.get_origin(hint)
    return origin if isinstance(origin, type) else None


def _compatible(given: Any, expected: Any) -> bool:
    """False only when both sides are classes and no value of `given` can be `expected`.
    Type arguments (`list[int]` against `list[str]`) are not compared."""
    given_classes = [_plain_class(m) for m in _members(given)]
    expected_classes = [_plain_class(m) for m in _members(expected)]
    known_given = [g for g in given_classes if g is not None]
    known_expected = [e for e in expected_classes if e is not None]
    if len(known_given) < len(given_classes) or len(known_expected) < len(expected_classes):
        return True
    return all(any(_subclass(g, e) for e in known_expected) for g in known_given)


def _subclass(given: type, expected: type) -> bool:
    if expected is object or given in _PROMOTIONS.get(expected, ()):
        return True
    try:
        return issubclass(given, expected)
    except TypeError:  # e.g. a Protocol that is not runtime_checkable
        return True
