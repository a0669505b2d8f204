"""`run_local()`: an SDK flow run in this process, deciding as the scheduler decides.

Which tasks run, which are skipped and why, and how the flow ends come from the rules the
scheduler's decider uses (`weir_proto.triggers`, `weir_proto.conditions`), so a flow gives
here the statuses and skip reasons it gives on the services:

- A task whose dependencies have all ended runs if they ended as its `trigger` asks and its
  `when` condition holds; otherwise it is skipped with the reason, and its dependents follow
  their own rules.
- A task's failure skips every task not started yet (`upstream task "x" failed`, `flow is
  failing: ...`), except those whose trigger runs after a failure.
- The on-exit task runs last, its `flow_status` parameter getting the outcome so far.
- With `fail_fast`, a failure cancels every task not started, those whose trigger runs after
  a failure too, but the on-exit task, which still runs last, as the scheduler does.
- The flow fails when any task failed, whatever ran after it.

Tasks run in rounds: every task that may start does, in the order they were declared; then
their results are recorded, failures first, before the next round decides. That is what the
services do when every task takes equally long (and a failure is seen before the tasks that
succeeded beside it start anything new). A task that raises is run again, at once, until
its retry policy's `max_attempts` (its own `retry`, else the flow's `defaults`, else 3, as
the scheduler resolves it) are spent; each instance of a mapped task on its own. The
backoff between attempts is not waited out. Tasks of the round a failure happened in run to
their end (with `fail_fast` the services kill those still running, and cancel the rest).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from weir_proto import triggers as rules
from weir_proto.conditions import Ref, evaluate, output_value, ref_value
from weir_proto.errors import WeirException
from weir_proto.spec import retry_policy
from weir_proto.status import TaskStatus

if TYPE_CHECKING:
    from weir.sdk.flow import Flow

from weir.sdk.task import FLOW_STATUS_PARAM, Task

EXIT_FAILED = 1
"""A task that raises exits 1 in a task process (`weir.sdk.entry`)."""


class ConditionUnreadable(WeirException, ValueError):
    """An output a `when` condition reads cannot be used (too large, a NUL character):
    the task fails, as it does on the scheduler."""


@dataclass(frozen=True, slots=True)
class LocalTask:
    """How one task (or one instance `NAME[i]` of a mapped task) ended in `run_local`."""

    name: str
    status: TaskStatus
    reason: str | None = None
    """Why it was skipped, or the error its last attempt failed with."""
    exit_code: int | None = None
    attempts: int = 0
    """How many times it ran (0: it never did; a mapped task's own: 0, its instances ran)."""


class LocalRun(dict[str, Any]):
    """The value of every task that succeeded, by name; `status` is the flow's outcome
    (`succeeded` or `failed`), `tasks` how each task ended (in the order they did), `errors`
    the exception of each task that failed (first failure first)."""

    def __init__(self) -> None:
        super().__init__()
        self.status = "succeeded"
        self.tasks: dict[str, LocalTask] = {}
        self.errors: dict[str, Exception] = {}

    def statuses(self) -> dict[str, str]:
        """`{task: status}`, as the services' flow view lists them."""
        return {name: str(task.status) for name, task in self.tasks.items()}


@dataclass
class _Run:
    flow: Flow
    params: Mapping[str, Any]
    result: LocalRun = field(default_factory=LocalRun)
    stored: dict[str, bytes] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    """The round's tasks: handed out, so a failure does not skip them."""

    def ended(self, name: str) -> TaskStatus | None:
        task = self.result.tasks.get(name)
        return task.status if task is not None else None

    def end(
        self, task: LocalTask, value: bytes | None = None, error: Exception | None = None
    ) -> None:
        self.result.tasks[task.name] = task
        if value is not None:
            self.stored[task.name] = value
        if error is not None:
            error.add_note(f'in task "{task.name}" of flow "{self.flow.name}" (run_local)')
            self.result.errors.setdefault(task.name, error)


def run(flow: Flow, params: Mapping[str, Any]) -> LocalRun:
    """Run `flow` (already checked) with these parameter values."""
    state = _Run(flow, params)
    regular = [t for t in flow.tasks if not t.on_exit]
    while True:
        starting = _decide(state, regular)
        if not starting:
            break
        failed: list[str] = []
        for task in starting:
            if not _execute(state, task):
                failed.append(task.name)
        for name in failed:
            _on_final_failure(state, name)
    on_exit = next((t for t in flow.tasks if t.on_exit), None)
    if on_exit is not None and state.ended(on_exit.name) is None:
        outcome = rules.flow_outcome(t.status for t in state.result.tasks.values())
        _execute(state, on_exit, {FLOW_STATUS_PARAM: outcome})
    state.result.status = rules.flow_outcome(t.status for t in state.result.tasks.values())
    for name, ended in state.result.tasks.items():
        if ended.status is TaskStatus.SUCCEEDED and name in state.stored:
            state.result[name] = flow.get(name).serializer.loads(state.stored[name])
    return state.result


def _decide(state: _Run, regular: list[Task[..., Any]]) -> list[Task[..., Any]]:
    """The tasks that start this round; every task whose dependencies have ended and that
    may not run is skipped (a skip ends a dependency in turn, so until none is left)."""
    starting: list[Task[..., Any]] = []
    state.started = set()
    decided = True
    while decided:
        decided = False
        for task in regular:
            if state.ended(task.name) is not None or task.name in state.started:
                continue
            deps = [u.name for u in state.flow.upstream(task)]
            ended = {d: state.ended(d) for d in deps}
            if any(s is None for s in ended.values()):
                continue
            decided = True
            reason = rules.trigger_reason(
                task.spec.trigger, deps, {d: s for d, s in ended.items() if s is not None}
            )
            if reason is None and task.condition is not None:
                try:
                    holds = evaluate(task.condition, functools.partial(_read, state, task.name))
                except ConditionUnreadable as exc:
                    state.end(LocalTask(task.name, TaskStatus.FAILED, str(exc)), error=exc)
                    _on_final_failure(state, task.name)
                    continue
                if not holds:
                    reason = rules.condition_false_reason(task.spec.when or "")
            if reason is not None:
                state.end(LocalTask(task.name, TaskStatus.SKIPPED, reason))
            else:
                starting.append(task)
                state.started.add(task.name)
    return starting


def _read(state: _Run, reader: str, ref: Ref) -> Any:
    """What `ref` reads for the condition of task `reader`."""
    outputs: dict[str, Any] = {}
    if len(ref.path) == 4:
        producer, output = ref.path[1], ref.path[3]
        if state.ended(producer) is TaskStatus.SUCCEEDED:
            value, problem = output_value(reader, output, state.stored[producer])
            if problem is not None:
                raise ConditionUnreadable(problem)
            outputs[output] = value
    return ref_value(
        ref,
        state.params,
        lambda name: state.result.tasks[name].status,
        lambda name: state.result.tasks[name].exit_code,
        outputs,
    )


def _on_final_failure(state: _Run, failed: str) -> None:
    """As the decider: every task not started is skipped, but for those whose trigger
    rule runs after a failure (and the on-exit task); with fail_fast, those are cancelled
    too, whatever else runs, but the on-exit task."""
    downstream = _descendants(state.flow, failed)
    waiting = [
        t for t in state.flow.tasks if state.ended(t.name) is None and t.name not in state.started
    ]
    for task in waiting:
        if not rules.runs_after_failure(task.spec.trigger, on_exit=task.on_exit):
            reason = rules.failure_skip_reason(failed, downstream=task.name in downstream)
            state.end(LocalTask(task.name, TaskStatus.SKIPPED, reason))
        elif state.flow.fail_fast and not task.on_exit:
            reason = rules.fail_fast_reason(failed)
            state.end(LocalTask(task.name, TaskStatus.CANCELLED, reason))


def _descendants(flow: Flow, name: str) -> set[str]:
    found: set[str] = set()
    frontier = [name]
    while frontier:
        current = frontier.pop()
        for task in flow.tasks:
            if task.name not in found and any(u.name == current for u in flow.upstream(task)):
                found.add(task.name)
                frontier.append(task.name)
    return found


def _execute(state: _Run, task: Task[..., Any], extra: Mapping[str, Any] | None = None) -> bool:
    """Run `task` (every instance, when mapped) and record how it ended; whether it
    succeeded."""
    flow = state.flow
    named = _parameters(task)

    def arguments() -> dict[str, Any]:
        """Its arguments read anew from bytes, as each attempt of a task process reads
        them (an attempt that changed its input objects leaves the next one unaffected)."""
        kwargs = {
            param: flow.get(_name(flow, ref)).serializer.loads(state.stored[_name(flow, ref)])
            for param, ref in task.inputs.items()
        }
        kwargs.update(flow.param_arguments(task, state.params))
        kwargs.update({k: v for k, v in (extra or {}).items() if k in named})
        return kwargs

    if task.map_over:
        return _execute_mapped(state, task, arguments)
    value, attempts, error = _attempts(state, task, arguments)
    if error is not None:
        failed = LocalTask(task.name, TaskStatus.FAILED, _message(error), EXIT_FAILED, attempts)
        state.end(failed, error=error)
        return False
    state.end(LocalTask(task.name, TaskStatus.SUCCEEDED, exit_code=0, attempts=attempts), value)
    return True


def _attempts(
    state: _Run, task: Task[..., Any], arguments: Callable[[], dict[str, Any]]
) -> tuple[bytes, int, None] | tuple[None, int, Exception]:
    """Run `task` until an attempt succeeds or its attempts are spent: the value written by
    its serializer, or the last attempt's exception, and how many attempts ran."""
    policy = retry_policy(task.spec, state.flow.defaults)
    attempt = 0
    while True:
        attempt += 1
        try:
            return task.serializer.dumps(task.invoke(arguments())), attempt, None
        except Exception as exc:
            if attempt >= policy.max_attempts:
                return None, attempt, exc


def _execute_mapped(
    state: _Run, task: Task[..., Any], arguments: Callable[[], dict[str, Any]]
) -> bool:
    """Each item of the list as one instance, as the scheduler's: items and values through
    JSON, the same limit and the same refusal of a value that is not a list; the task ends
    as its instances did."""
    ((param, ref),) = task.map_over.items()
    producer = _name(state.flow, ref)
    items = state.flow.get(producer).serializer.loads(state.stored[producer])
    what = f'task "{task.name}": map.over output "{producer}"'
    most = task.spec.map.max_items if task.spec.map is not None else None
    problem: Exception | None = None
    if not isinstance(items, list):
        problem = TypeError(f"{what} is a {type(items).__name__}, not a JSON list")
    elif most is not None and len(items) > most:
        problem = ValueError(
            f"{what} has {len(items):,} items; the limit is {most:,} (map.max_items)"
        )
    if problem is not None:
        state.end(LocalTask(task.name, TaskStatus.FAILED, str(problem)), error=problem)
        return False
    values, failed = [], []
    for index, item in enumerate(items):
        instance = f"{task.name}[{index}]"
        with_item = functools.partial(_with_item, arguments, param, json.dumps(item))
        value, attempts, error = _attempts(state, task, with_item)
        if error is not None:
            failed.append(instance)
            ended = LocalTask(instance, TaskStatus.FAILED, _message(error), EXIT_FAILED, attempts)
            state.end(ended, error=error)
            continue
        assert value is not None
        values.append(task.serializer.loads(value))
        state.end(LocalTask(instance, TaskStatus.SUCCEEDED, exit_code=0, attempts=attempts))
    if failed:
        shown = ", ".join(f'"{n}"' for n in failed[:5]) + (", …" if len(failed) > 5 else "")
        reason = f"{len(failed):,} of {len(items):,} instances failed: {shown}"
        state.end(LocalTask(task.name, TaskStatus.FAILED, reason))
        return False
    state.end(LocalTask(task.name, TaskStatus.SUCCEEDED), json.dumps(values).encode())
    return True


def _with_item(arguments: Callable[[], dict[str, Any]], param: str, item: str) -> dict[str, Any]:
    """An instance's arguments: the task's, and its item read from JSON as `WEIR_ITEM` is."""
    return {**arguments(), param: json.loads(item)}


def _parameters(task: Task[..., Any]) -> set[str]:
    return set(inspect.signature(task.func).parameters)


def _name(flow: Flow, ref: Any) -> str:
    producer = flow.resolve(ref)
    assert producer is not None, "checked by find_problems"
    return producer.name


def _message(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
