"""The planner's graph: task names, dependencies, inputs and conditions checked across the
whole flow, and the tasks put in topological order. `plan` is the one entry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec
from weir_proto import params as parameters
from weir_proto.conditions import ConditionError, Expr, parse_condition, ref_problem, refs
from weir_proto.errors import SpecError
from weir_proto.ids import DNS1123_LABEL_RULE, is_dns_label
from weir_proto.spec import FlowSpec, TaskSpec
from weir_proto.validation import OUTPUT_NAME_RULE, is_output_name, printable

from weir_scheduler.map_plan import check_maps, item_problem
from weir_scheduler.planner.collector import collector_paused
from weir_scheduler.planner.fields import (
    CONTROL,
    FLOW_NAME_MAX,
    ON_EXIT_PATH,
    PRIORITY_MAX,
    TASK_PATH,
    TIMEOUT_MAX,
    Err,
    check_artifact_paths,
    check_flow_fields,
    check_queue,
    check_retry,
    check_task_fields,
    resolve_task,
    with_params,
)
from weir_scheduler.planner.result import LIMITS_DEFAULT, Limits, Plan, Rejected


@collector_paused()
def plan(spec: FlowSpec, limits: Limits = LIMITS_DEFAULT) -> Plan:
    """Check names, references and the graph. Raises `Rejected` listing every problem."""
    errors: list[SpecError] = []
    flow = f"flow {printable(spec.name)}"

    def err(path: str, message: str, task: str | None = None) -> None:
        errors.append(SpecError(path=path, message=message, task=task))

    if not spec.name.strip():
        err("$.name", "flow name is empty: give the flow a name")
    elif len(spec.name) > FLOW_NAME_MAX or CONTROL.search(spec.name):
        err(
            "$.name",
            f"{flow}: name must be at most {FLOW_NAME_MAX} characters without control characters",
        )
    if spec.id is not None and not is_dns_label(spec.id):
        err(
            "$.id",
            f"{flow}: id {printable(spec.id)} is not a DNS-1123 label ({DNS1123_LABEL_RULE})",
        )
    if not spec.tasks:
        err("$.tasks", f"{flow}: has no tasks; add at least one")
    counted = len(spec.tasks) + (spec.on_exit is not None)  # as a mapped task's expansion counts
    if counted > limits.max_tasks:
        err(
            "$.tasks",
            f"{flow}: has {counted:,} tasks; the limit is {limits.max_tasks:,} "
            "(WEIR_MAX_TASKS): split it into several flows or raise the scheduler's "
            "WEIR_MAX_TASKS",
        )
        raise Rejected(errors, spec.id, spec.name)

    check_flow_fields(spec, flow, err)
    values, problems = parameters.resolve(spec.params, spec.arguments, flow)
    errors.extend(problems)
    by_name: dict[str, TaskSpec] = {}
    outputs: dict[str, str] = {}  # output name -> producing task
    conditions: dict[str, Expr] = {}
    listed = _listed_tasks(spec)
    for path, own in listed:
        task = resolve_task(spec, own)
        where = f"{flow}: task {printable(task.name)}"
        task = with_params(task, values, spec.params.keys(), path, where, err)
        if path == ON_EXIT_PATH:
            task = msgspec.structs.replace(task, trigger="all_done")
        if task.when is not None:
            try:
                conditions[task.name] = parse_condition(task.when)
            except ConditionError as exc:
                err(f"{path}.when", f"{where}: when: {exc}", task.name)
        if not is_dns_label(task.name):
            err(
                f"{path}.name",
                f"{where}: name is not a DNS-1123 label ({DNS1123_LABEL_RULE}); "
                "it becomes a pod name",
                task.name,
            )
        if task.name in by_name:
            err(
                f"{path}.name",
                f"{where}: duplicate task name ({_label(path)}); task names must be unique",
                task.name,
            )
        else:
            by_name[task.name] = task
        check_task_fields(task, path, where, err)
        check_queue(own.queue, path, where, err, task.name)
        item_problem(task, path, where, err)
        # What a task inherits from the flow or its defaults was checked there, once.
        if own.retry is not None:
            check_retry(own.retry, f"{path}.retry", where, err, task.name)
        if own.timeout is not None and not 0 < own.timeout <= TIMEOUT_MAX:
            err(
                f"{path}.timeout",
                f"{where}: timeout must be between 0 and {TIMEOUT_MAX:,g} seconds",
                task.name,
            )
        if own.priority is not None and not 0 <= own.priority <= PRIORITY_MAX:
            err(
                f"{path}.priority",
                f"{where}: priority must be between 0 (highest) and {PRIORITY_MAX}",
                task.name,
            )
        check_artifact_paths(task, path, where, err)
        for o_index, output in enumerate(task.outputs):
            if not is_output_name(output.name):
                err(
                    f"{path}.outputs[{o_index}].name",
                    f"{where}: output name {printable(output.name)} is not a name "
                    f"({OUTPUT_NAME_RULE}); it becomes a file name",
                    task.name,
                )
            if output.name in outputs:
                err(
                    f"{path}.outputs[{o_index}].name",
                    f"{where}: output {printable(output.name)} is already produced by task "
                    f"{printable(outputs[output.name])}; output names must be unique in a flow",
                    task.name,
                )
            else:
                outputs[output.name] = task.name

    named = sorted(name for name in by_name if name)
    names = ", ".join(named[:20]) + (", …" if len(named) > 20 else "")
    depends: dict[str, tuple[str, ...]] = {}
    seen_names: set[str] = set()
    for path, task in listed:
        if task.name in seen_names:
            continue
        seen_names.add(task.name)
        where = f"{flow}: task {printable(task.name)}"
        if spec.on_exit is not None and task is spec.on_exit:
            depends[task.name] = tuple(dict.fromkeys(t.name for _, t in listed if t is not task))
            if task.depends or task.trigger != "all_success" or task.when is not None:
                err(
                    path,
                    f"{where}: on_exit runs after every other task, whatever became of them; "
                    "remove its depends, trigger and when",
                    task.name,
                )
            continue
        valid: list[str] = []
        named_deps: set[str] = set()  # a set beside the list: fan-ins of 10,000 stay linear
        for d_index, dep in enumerate(task.depends):
            if dep != task.name and dep in by_name and dep not in named_deps:
                valid.append(dep)
                named_deps.add(dep)
                continue
            dpath = f"{path}.depends[{d_index}]"
            if dep == task.name:
                err(dpath, f"{where}: depends on itself; remove it from depends", task.name)
            elif dep not in by_name:
                err(
                    dpath,
                    f"{where}: depends on {printable(dep)}, which does not exist (tasks: {names})",
                    task.name,
                )
            else:
                err(dpath, f"{where}: lists {printable(dep)} twice in depends", task.name)
        depends[task.name] = tuple(valid)

    dependents: dict[str, list[str]] = {name: [] for name in depends}
    for name, deps in depends.items():
        for dep in deps:
            dependents[dep].append(name)

    order = _topological_order(depends, dependents)
    if len(order) < len(depends):
        cycle = _find_cycle(depends, set(depends) - set(order))
        err(
            "$.tasks",
            f"{flow}: has a dependency cycle: {' -> '.join(cycle)}; "
            "remove one of these depends to break it",
            cycle[0],
        )
    else:
        _check_inputs(listed, flow, depends, outputs, conditions, spec, err)
    on_exit = spec.on_exit.name if spec.on_exit is not None else None
    check_maps(listed, flow, depends, outputs, on_exit, err)

    if errors:
        raise Rejected(errors, spec.id, spec.name)
    result = Plan(
        spec=spec,
        order=tuple(order),
        tasks=by_name,
        depends=depends,
        dependents={name: tuple(children) for name, children in dependents.items()},
        positions={task.name: index for index, (_, task) in enumerate(listed)},
        producers=outputs,
        names=tuple(task.name for _, task in listed),
        params=values,
        conditions=conditions,
        on_exit=spec.on_exit.name if spec.on_exit is not None else None,
    )
    _remember(result)
    return result


_RECENT_PLANS: dict[int, Plan] = {}
RECENT_PLANS_MAX = 256


def _remember(result: Plan) -> None:
    if len(_RECENT_PLANS) >= RECENT_PLANS_MAX:
        _RECENT_PLANS.pop(next(iter(_RECENT_PLANS)))
    _RECENT_PLANS[id(result.spec)] = result


def planned(spec: FlowSpec, limits: Limits) -> Plan:
    """`plan(spec)`, reusing the plan just made for this very spec object (a submit is planned
    once, then evolved from its event, which holds the same spec)."""
    cached = _RECENT_PLANS.get(id(spec))
    if cached is not None and cached.spec is spec:
        return cached
    return plan(spec, limits)


def _check_inputs(
    listed: list[tuple[str, TaskSpec]],
    flow: str,
    depends: Mapping[str, tuple[str, ...]],
    outputs: Mapping[str, str],
    conditions: Mapping[str, Expr],
    spec: FlowSpec,
    err: Err,
) -> None:
    """Inputs come from upstream tasks; conditions read declared parameters and upstream
    tasks (whose results are known when the condition is evaluated)."""
    ancestors_cache: dict[str, frozenset[str]] = {}

    def ancestors(name: str) -> frozenset[str]:
        # Iterative to survive 10,000-task chains; memoised to stay linear-ish.
        if name in ancestors_cache:
            return ancestors_cache[name]
        stack = [name]
        while stack:
            current = stack[-1]
            missing = [d for d in depends[current] if d not in ancestors_cache]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            acc: set[str] = set()
            for d in depends[current]:
                acc.add(d)
                acc |= ancestors_cache[d]
            ancestors_cache[current] = frozenset(acc)
        return ancestors_cache[name]

    for path, task in listed:
        where = f"{flow}: task {printable(task.name)}"
        condition = conditions.get(task.name)
        for ref in refs(condition) if condition is not None else []:
            problem = ref_problem(ref, spec.params, ancestors(task.name), outputs)
            if problem:
                err(f"{path}.when", f"{where}: when: {problem}", task.name)
        for i_index, item in enumerate(task.inputs):
            producer = outputs.get(item.from_)
            ipath = f"{path}.inputs[{i_index}].from"
            if producer is None:
                err(
                    ipath,
                    f"{where}: input {printable(item.from_)} is not an output of any task",
                    task.name,
                )
            elif producer not in ancestors(task.name):
                err(
                    ipath,
                    f"{where}: input {printable(item.from_)} comes from task "
                    f"{printable(producer)}, which is not upstream; add it to depends",
                    task.name,
                )


def _label(path: str) -> str:
    match = TASK_PATH.match(path)
    return f"task #{int(match.group(1)) + 1}" if match else "the on_exit task"


def _listed_tasks(spec: FlowSpec) -> list[tuple[str, TaskSpec]]:
    """(path, task) of every task: the spec's tasks, then its on_exit task."""
    listed = [(f"$.tasks[{index}]", task) for index, task in enumerate(spec.tasks)]
    if spec.on_exit is not None:
        listed.append((ON_EXIT_PATH, spec.on_exit))
    return listed


def _topological_order(
    depends: Mapping[str, tuple[str, ...]], dependents: Mapping[str, Iterable[str]]
) -> list[str]:
    remaining = {name: len(deps) for name, deps in depends.items()}
    ready = [name for name, count in remaining.items() if count == 0]
    order: list[str] = []
    while ready:
        name = ready.pop()
        order.append(name)
        for child in dependents[name]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    return order


def _find_cycle(depends: Mapping[str, tuple[str, ...]], stuck: set[str]) -> list[str]:
    """A cycle among the tasks Kahn's algorithm could not order, as a closed path."""
    start = min(stuck)
    path = [start]
    index = {start: 0}
    current = start
    while True:
        current = min(d for d in depends[current] if d in stuck)
        if current in index:
            return [*path[index[current] :], current]
        index[current] = len(path)
        path.append(current)
