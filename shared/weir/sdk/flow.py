"""`Flow` and `Task`: a flow written as decorated Python functions.

```python
flow = Flow("etl", image="python:3.11-slim")

@flow.task
def extract() -> list[dict[str, int]]: ...

@flow.task(inputs={"rows": extract}, retry=3, timeout=600)
def load(rows: list[dict[str, int]]) -> int: ...

@flow.task(depends=[load], trigger="all_done")     # runs whether load failed or not
def cleanup() -> None: ...

@flow.on_exit                                       # runs last, with the flow's outcome
def report(flow_status: str) -> None: ...

if __name__ == "__main__":
    flow.main()
```

Each task becomes one `TaskSpec` whose `cmd` runs `python -m weir.sdk.entry <file> <task>`;
its return value is written to one output file (named after the task) with the task's
serializer, and every input is that file placed in the consumer's working directory.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Unpack, overload

import msgspec
from weir_proto.conditions import ConditionError, Expr, parse_condition, refs
from weir_proto.spec import (
    Duration,
    FlowSpec,
    Input,
    KubernetesOptions,
    MapSpec,
    Output,
    Resources,
    RetryPolicy,
    TaskDefaults,
    TaskSpec,
    Trigger,
)
from weir_proto.spec import ParamSpec as FlowParam
from weir_proto.triggers import FLOW_STATUS_ENV

from weir.sdk import params as flow_params
from weir.sdk import serializers
from weir.sdk.checks import FlowDefinitionError, find_problems
from weir.sdk.serializers import Serializer
from weir.sdk.task import (
    FLOW_STATUS_PARAM,
    P,
    R,
    Secret,
    Task,
    TaskDeclaration,
    TaskOptions,
    env_vars,
    resources_of,
    spec_part,
    task_name_for,
)

if TYPE_CHECKING:
    from weir.client import Client
    from weir.sdk.local import LocalRun


ENTRY_MODULE = "weir.sdk.entry"
INPUT_DIR = "_weir/inputs"
"""Where a task process finds its inputs, one file per parameter (relative to the work dir)."""
OUTPUT_PATH = "_weir/output"
"""Where a task process writes its return value (relative: the local executor refuses
absolute paths)."""

ITEM_ENV = "WEIR_ITEM"
"""An instance of a mapped task finds its item here, as JSON."""

_registry: dict[str, Flow] = {}
_in_task_process = False


def enter_task_process() -> None:
    """Called by `weir.sdk.entry` before it imports the user's file: `Flow.main()` is then a
    no-op, so a file that calls it unconditionally does not resubmit itself."""
    global _in_task_process
    _in_task_process = True


def registered_flow(name: str | None) -> Flow:
    """The flow built under `name` in this process (the only one, when `name` is None)."""
    if name is not None and name in _registry:
        return _registry[name]
    if name is None and len(_registry) == 1:
        return next(iter(_registry.values()))
    known = ", ".join(sorted(_registry)) or "none"
    wanted = f'a flow named "{name}"' if name else "exactly one flow"
    raise LookupError(f"expected {wanted} to be defined on import; flows defined: {known}")


class Flow:
    """A flow of Python tasks: decorate functions with `@flow.task`, then `flow.main()`."""

    def __init__(
        self,
        name: str,
        *,
        image: str | None = None,
        defaults: TaskDefaults | Mapping[str, Any] | None = None,
        env: Mapping[str, str | Secret] | None = None,
        serializer: str | Serializer = serializers.DEFAULT,
        entrypoint: str | None = None,
        python: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        max_parallel: int | None = None,
        fail_fast: bool = False,
    ) -> None:
        """`image` and `defaults` (retry, timeout, priority, queue) apply to every task that
        does not set its own. `entrypoint` is how a task process finds this file: its
        absolute path by default (right for the local executor), e.g. `/app/etl.py` or a
        module name like `pipelines.etl` inside an image. `python` is the interpreter in
        `cmd`: this one (`sys.executable`) by default, `python` inside an image."""
        self.name = name
        self.problems: list[str] = []
        """Options that are not valid (reported, with every other problem, by `check`)."""
        self.defaults: TaskDefaults | None = spec_part(
            defaults, TaskDefaults, "defaults", "Flow(...)", self.problems
        )
        if image is not None:
            self.defaults = msgspec.structs.replace(self.defaults or TaskDefaults(), image=image)
        self.env = dict(env or {})
        self.serializer = serializers.resolve(serializer)
        self.entrypoint = entrypoint
        self.python = python
        self.tags = list(tags)
        self.metadata = dict(metadata or {})
        self.max_parallel = max_parallel
        self.fail_fast = fail_fast
        self.tasks: list[Task[..., Any]] = []
        self.params: dict[str, FlowParam] = {}
        """The flow's parameters: the arguments of its `@flow.entry` function."""
        _registry[name] = self

    def __repr__(self) -> str:
        return f'<flow "{self.name}": {", ".join(t.name for t in self.tasks)}>'

    # Declaring ----------------------------------------------------------------------------

    def entry(self, func: Callable[P, R]) -> Callable[P, R]:
        """Declare the flow's parameters as the typed arguments of `func` (its body is not
        run): `def etl(date: str, rows: int = 3)` is a required string and an int that
        defaults to 3. A task gets a parameter's value through a function parameter of the
        same name that is not one of its inputs."""
        where = f"entry function {getattr(func, '__qualname__', repr(func))}()"
        self.params, problems = flow_params.declared_params(func, where)
        self.problems.extend(problems)
        return func

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, func: None = None, /, **options: Unpack[TaskDeclaration]
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        inputs: Mapping[str, Task[..., Any] | str] | None = None,
        depends: Sequence[Task[..., Any] | str] = (),
        map_over: Mapping[str, Task[..., Any] | str] | None = None,
        max_items: int | None = None,
        trigger: Trigger | None = None,
        when: str | None = None,
        retry: int | RetryPolicy | Mapping[str, Any] | None = None,
        timeout: float | str | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
        priority: int | None = None,
        queue: str | None = None,
        image: str | None = None,
        env: Mapping[str, str | Secret] | None = None,
        serializer: str | Serializer | None = None,
        kubernetes: KubernetesOptions | Mapping[str, Any] | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task of this flow.

        `inputs` maps a parameter to the task whose return value it receives (a task object
        or its name); each one is also a dependency. `depends` orders tasks without passing
        data. `retry` is a number of attempts, a `RetryPolicy` or its fields as a dict; `timeout`
        is seconds or a duration like "10m" (as in a YAML spec);
        `resources` is `{"cpu": "500m", "memory": "1Gi"}` (requests) or
        `{"requests": {...}, "limits": {...}}` for the Kubernetes executor. `serializer`
        writes the return value: pickle (default), json, text, bytes, or an object with
        dumps/loads. The task name is the function name with `_` as `-` unless `name` is set.

        `map_over={"item": list_files}` runs the task once per item of the list
        `list_files` returns (which must use the json serializer), each run getting its
        item as the parameter `item`; a task taking this task's value gets the list of the
        runs' values, in item order (`max_items` caps the list; see docs/sdk.md).

        `trigger` is how its dependencies must have ended for it to run ("all_success",
        the default, "all_done", "all_failed", "one_failed", "one_success", "none_failed");
        `when` a condition, as in a YAML spec (`'params.env == "prod"'`,
        `f'{check.output} == "go"'`): false skips the task with the reason. A task the
        condition reads becomes a dependency, as an input does.
        """

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task_name = name or task_name_for(fn)
            where = f'task "{task_name}"'
            spec = self._task_spec(
                task_name,
                TaskOptions(
                    retry=retry,
                    timeout=timeout,
                    resources=resources,
                    priority=priority,
                    queue=queue,
                    image=image,
                    env=env,
                    kubernetes=kubernetes,
                ),
            )
            checked = spec_part(trigger, Trigger | None, "trigger", where, self.problems)
            spec = msgspec.structs.replace(spec, trigger=checked or "all_success", when=when)
            serializer_choice: str | Serializer | None = serializer
            if map_over:
                spec = msgspec.structs.replace(
                    spec, map=MapSpec(over="", max_items=max_items)
                )  # `over` is the producer's output, named when the flow is built
                serializer_choice = serializer or "json"
            registered = Task(
                self,
                fn,
                task_name,
                inputs or {},
                depends,
                self._serializer(serializer_choice),
                spec,
                map_over=map_over,
                condition=self._condition(when, where),
            )
            self.tasks.append(registered)
            return registered

        if func is not None:
            return register(func)
        return register

    @overload
    def on_exit(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def on_exit(
        self, func: None = None, /, **options: Unpack[TaskOptions]
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def on_exit(
        self, func: Callable[P, R] | None = None, /, **options: Unpack[TaskOptions]
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register the flow's on-exit task (the spec's `on_exit`): it runs last, after every
        other task ended however they did, and its function's `flow_status` parameter (if it
        has one) gets the flow's outcome so far, `succeeded` or `failed` (or `cancelled`
        after a `weir cancel`). It takes flow parameters but no inputs; if it fails, a flow
        that would have succeeded fails. Options as for `task`, but
        `inputs`, `depends`, `map_over`, `trigger` and `when`."""

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task_name = options.get("name") or task_name_for(fn)
            unknown = sorted(set(options) - set(TaskOptions.__annotations__))
            if unknown:
                self.problems.append(
                    f'task "{task_name}": @flow.on_exit takes no {", ".join(unknown)} (it runs '
                    "after every other task, whatever became of them); it takes "
                    f"{', '.join(TaskOptions.__annotations__)}"
                )
            spec = self._task_spec(task_name, options)
            chosen = self._serializer(options.get("serializer"))
            registered = Task(self, fn, task_name, {}, (), chosen, spec, on_exit=True)
            self.tasks.append(registered)
            return registered

        if func is not None:
            return register(func)
        return register

    def _task_spec(self, name: str, options: TaskOptions) -> TaskSpec:
        """A task's own settings, read as a spec file's would be (problems noted)."""
        where = f'task "{name}"'
        k8s = options.get("kubernetes")
        if isinstance(k8s, Mapping):
            k8s = msgspec.convert(dict(k8s), KubernetesOptions)
        limits = resources_of(options.get("resources"))
        if limits is not None:
            k8s = msgspec.structs.replace(k8s or KubernetesOptions(), resources=limits)
        timeout, retry = options.get("timeout"), options.get("retry")
        return TaskSpec(
            name=name,
            cmd=[],
            image=options.get("image"),
            env=env_vars({**self.env, **(options.get("env") or {})}),
            queue=options.get("queue"),
            timeout=spec_part(timeout, Duration | None, "timeout", where, self.problems),
            retry=spec_part(retry, RetryPolicy | None, "retry", where, self.problems),
            priority=options.get("priority"),
            kubernetes=k8s,
        )

    def _serializer(self, choice: str | Serializer | None) -> Serializer:
        return self.serializer if choice is None else serializers.resolve(choice)

    def _condition(self, when: object, where: str) -> Expr | None:
        """`when` parsed as the planner parses it (its problem noted, in its words)."""
        if when is None:
            return None
        if not isinstance(when, str):
            self.problems.append(
                f"{where}: when: expected a condition as a string, like "
                f"'params.env == \"prod\"', got {type(when).__name__}"
            )
            return None
        try:
            return parse_condition(when)
        except ConditionError as exc:
            self.problems.append(f"{where}: when: {exc}")
            return None

    # Building -----------------------------------------------------------------------------

    def get(self, name: str) -> Task[..., Any]:
        """The task called `name`."""
        for candidate in self.tasks:
            if candidate.name == name:
                return candidate
        known = ", ".join(t.name for t in self.tasks)
        raise LookupError(f'flow "{self.name}" has no task "{name}" (tasks: {known})')

    def resolve(self, ref: Task[..., Any] | str) -> Task[..., Any] | None:
        """The task of this flow that `ref` names, or None."""
        if isinstance(ref, Task):
            return ref if any(ref is t for t in self.tasks) else None
        if isinstance(ref, str):
            return next((t for t in self.tasks if t.name == ref), None)
        return None

    def check(self) -> None:
        """Raise `FlowDefinitionError` listing every problem: missing or unknown inputs,
        cycles, incompatible type hints, names that are not DNS-1123 labels."""
        problems = find_problems(self)
        if problems:
            raise FlowDefinitionError(self.name, problems)

    def upstream(self, task: Task[..., Any]) -> list[Task[..., Any]]:
        """The tasks `task` waits for: its inputs' producers, then its `depends`, then the
        tasks its `when` condition reads."""
        found: list[Task[..., Any]] = []
        read = [r.path[1] for r in refs(task.condition)] if task.condition is not None else []
        for ref in [*task.map_over.values(), *task.inputs.values(), *task.depends, *read]:
            producer = self.resolve(ref)
            if producer is not None and all(producer is not f for f in found):
                found.append(producer)
        return found

    def spec(
        self,
        *,
        flow_id: str | None = None,
        entrypoint: str | None = None,
        python: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> FlowSpec:
        """The flow spec to submit (checked first). `entrypoint` and `python` override the
        flow's for this build; `params` are the values of the flow's parameters (checked as
        the scheduler checks them: ParamsError), else they are given at submit."""
        self.check()
        if params is not None:
            flow_params.resolve(self.name, self.params, params)
        where = entrypoint or self.entrypoint or self.default_entrypoint()
        interpreter = python or self.python or sys.executable or "python"
        built = {
            task.name: msgspec.structs.replace(
                task.spec,
                cmd=[interpreter, "-m", ENTRY_MODULE, where, task.name, "--flow", self.name],
                depends=[t.name for t in self.upstream(task)],
                inputs=[
                    Input(from_=self._producer(ref).name, path=input_path(param))
                    for param, ref in task.inputs.items()
                ],
                outputs=[Output(name=task.name, path=OUTPUT_PATH)],
                map=self._map_spec(task),
            )
            for task in self.tasks
        }
        on_exit = next((t.name for t in self.tasks if t.on_exit), None)
        return FlowSpec(
            name=self.name,
            tasks=[spec for name, spec in built.items() if name != on_exit],
            on_exit=built[on_exit] if on_exit is not None else None,
            id=flow_id,
            defaults=self.defaults,
            tags=self.tags,
            metadata=self.metadata,
            max_parallel=self.max_parallel,
            fail_fast=self.fail_fast,
            params=dict(self.params),
            arguments=dict(params or {}),
        )

    def default_entrypoint(self) -> str:
        """The absolute path of the file that defines the tasks."""
        for task in self.tasks:
            path = getattr(task.func, "__globals__", {}).get("__file__")
            if path:
                return str(Path(path).resolve())
        raise FlowDefinitionError(
            self.name,
            [
                "cannot tell which file defines its tasks (interactive session?); "
                'pass Flow(..., entrypoint="/path/to/flow.py") or a module name'
            ],
        )

    def _map_spec(self, task: Task[..., Any]) -> MapSpec | None:
        if task.spec.map is None:
            return None
        (ref,) = task.map_over.values()
        return msgspec.structs.replace(task.spec.map, over=self._producer(ref).name)

    def _producer(self, ref: Task[..., Any] | str) -> Task[..., Any]:
        producer = self.resolve(ref)
        assert producer is not None, "checked by find_problems"
        return producer

    # Running ------------------------------------------------------------------------------

    def run_local(self, **params: Any) -> LocalRun:
        """Run the flow in this process as the services would and return each succeeded
        task's value by name (a `LocalRun`, whose `tasks` say how every task ended). When the
        flow failed, raises the exception of the first task that failed (with a note naming
        it), once every task that runs after a failure and the on-exit task have run.
        `params` are the flow's parameters, checked as the scheduler checks them
        (ParamsError lists every problem). Values go through each task's serializer as
        bytes, exactly as between task processes, so a value that would not survive a real
        run fails here too. See `weir.sdk.local` for the order tasks run in."""
        outcome = self.run_local_outcome(**params)
        if outcome.errors:
            raise next(iter(outcome.errors.values()))
        return outcome

    def run_local_outcome(self, **params: Any) -> LocalRun:
        """As `run_local`, but a failed flow is returned, not raised: `status` is `failed`,
        `tasks` has each task's status and reason, `errors` each failed task's exception."""
        from weir.sdk import local

        self.check()
        return local.run(self, flow_params.resolve(self.name, self.params, params))

    def run_task(self, name: str, workdir: Path) -> None:
        """Run one task as the runner asks: read the input files in `workdir`, call the
        function, write its output file. Used by `weir.sdk.entry` in the task process."""
        task = self.get(name)
        kwargs = {
            param: self._producer(ref).serializer.loads((workdir / input_path(param)).read_bytes())
            for param, ref in task.inputs.items()
        }
        kwargs.update(self.param_arguments(task, flow_params.from_environment(self.params)))
        for param in task.map_over:  # an instance of a mapped task: its item
            kwargs[param] = json.loads(os.environ[ITEM_ENV])
        if task.on_exit and FLOW_STATUS_PARAM in inspect.signature(task.func).parameters:
            kwargs[FLOW_STATUS_PARAM] = os.environ.get(FLOW_STATUS_ENV, "")
        data = task.serializer.dumps(task.invoke(kwargs))
        target = workdir / OUTPUT_PATH
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, target)

    def load_output(self, name: str, data: bytes) -> Any:
        """Decode the output file of task `name` (e.g. read from the runner's artifacts)."""
        return self.get(name).serializer.loads(data)

    def param_arguments(self, task: Task[..., Any], values: Mapping[str, Any]) -> dict[str, Any]:
        """The flow parameters `task`'s function takes by name (those not among its inputs)."""
        named = inspect.signature(task.func).parameters
        return {k: v for k, v in values.items() if k in named and k not in task.inputs}

    async def submit(
        self, client: Client, flow_id: str | None = None, params: Mapping[str, Any] | None = None
    ) -> str:
        """Build the spec with `params` (checked here first) and submit it; the flow id."""
        return await client.submit(self.spec(flow_id=flow_id, params=params or {}))

    def main(self, argv: Sequence[str] | None = None) -> None:
        """The command line of a flow file: build and submit it (`--dry-run`, `--wait`,
        `--follow`, `--nats-url`, ... see `--help`).

        Does nothing inside a task process, nor (without `argv`) when the calling module is
        merely imported rather than run as the program, so importing a flow file from a
        test or a notebook never submits it."""
        if _in_task_process:
            return
        if argv is None and sys._getframe(1).f_globals.get("__name__") != "__main__":
            return
        from weir.sdk.launch import run

        code = run(self, argv)
        if code:
            raise SystemExit(code)


def input_path(param: str) -> str:
    """Where input `param` is placed in the task's working directory."""
    return str(PurePosixPath(INPUT_DIR) / param)
