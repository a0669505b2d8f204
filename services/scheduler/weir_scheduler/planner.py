"""The planner: turns submitted bytes into a validated flow and its dependency graph.

Every problem is reported (not just the first), each naming the flow, the task and the field,
with what to do about it. Readiness is per task: `Plan.ready_after` gives the tasks whose own
dependencies have all succeeded, whatever order the tasks were listed in.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from weir_proto import params as parameters
from weir_proto.conditions import ConditionError, Expr, Ref, parse_condition, refs
from weir_proto.errors import SpecError, WeirException
from weir_proto.ids import DNS1123_LABEL_RULE, is_dns_label
from weir_proto.spec import EnvVar, FlowSpec, Input, Output, RetryPolicy, TaskDefaults, TaskSpec
from weir_proto.status import FLOW_STATUS_NAMES
from weir_proto.subjects import DEFAULT_QUEUE
from weir_proto.validation import (
    OUTPUT_NAME_RULE,
    Checked,
    check_flow,
    is_output_name,
    printable,
)

from weir_scheduler.map_plan import check_maps, is_item_placeholder, item_problem

MAX_TASKS_DEFAULT = 10_000
MAX_SUBMIT_BYTES_DEFAULT = 4 * 1024 * 1024
FLOW_NAME_MAX = 253
STRING_MAX = 64 * 1024
"""Longest single string (argv element, env value, path) we accept."""
_KERNEL_DIRS = ("/proc/", "/sys/", "/dev/")

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
QUEUE_NAME = re.compile(r"^[a-z0-9]([-_a-z0-9]{0,62})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TASK_PATH = re.compile(r"^\$\.tasks\[(\d+)\]")
ON_EXIT_PATH = "$.on_exit"


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated flow: tasks by name and the edges both ways, in topological order."""

    spec: FlowSpec
    order: tuple[str, ...]
    tasks: Mapping[str, TaskSpec]
    """Each task with the flow's defaults applied: queue, priority, retry are always set."""
    depends: Mapping[str, tuple[str, ...]]
    dependents: Mapping[str, tuple[str, ...]]
    positions: Mapping[str, int]
    """Where each task stands in the submitted list (for display in the user's order)."""
    producers: Mapping[str, str]
    """Output name -> the task that produces it."""
    names: tuple[str, ...] = ()
    """Task names by position: the spec's tasks, then the `on_exit` task if any."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Every parameter's value: the submit's argument, else the default."""
    conditions: Mapping[str, Expr] = field(default_factory=dict)
    """Each task's parsed `when`."""
    on_exit: str | None = None
    """The flow's `on_exit` task: it depends on every other task and runs last."""

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(name for name in self.order if not self.depends[name])

    def descendants(self, name: str) -> list[str]:
        """Every task downstream of `name`, each once."""
        seen: set[str] = set()
        stack = list(self.dependents[name])
        out: list[str] = []
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            out.append(current)
            stack.extend(self.dependents[current])
        return out


@dataclass(frozen=True, slots=True)
class Limits:
    max_tasks: int = MAX_TASKS_DEFAULT
    max_submit_bytes: int = MAX_SUBMIT_BYTES_DEFAULT


class Rejected(WeirException):
    """The submit is not a valid flow. `flow_id`/`name` are set when they could be read."""

    def __init__(
        self, errors: list[SpecError], flow_id: str | None = None, name: str | None = None
    ) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors
        self.flow_id = flow_id
        self.name = name


def decode(data: bytes, limits: Limits = Limits()) -> FlowSpec:
    """Decode and structurally check a submit. Raises `Rejected` with precise errors."""
    if len(data) > limits.max_submit_bytes:
        raise Rejected(
            [
                SpecError(
                    path="$",
                    message=(
                        f"submit is {len(data):,} bytes; the limit is {limits.max_submit_bytes:,}"
                        " (WEIR_MAX_SUBMIT_BYTES): split the flow or raise the limit"
                    ),
                )
            ]
        )
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise Rejected(
            [SpecError(path="$", message=f"submit is not valid JSON: {exc}; send a JSON object")]
        ) from None
    except RecursionError:
        raise Rejected(
            [SpecError(path="$", message="submit nests too deeply to be a flow spec")]
        ) from None
    except UnicodeDecodeError as exc:
        raise Rejected(
            [
                SpecError(
                    path="$", message=f"submit is not valid UTF-8 ({exc.reason}); send UTF-8 JSON"
                )
            ]
        ) from None
    if not isinstance(raw, dict):
        raise Rejected(
            [
                SpecError(
                    path="$",
                    message=(
                        f"submit must be a JSON object with name and tasks, "
                        f"got {type(raw).__name__}"
                    ),
                )
            ]
        )
    nul = _find_nul(raw)
    if nul is not None:
        given = raw.get("id")
        raise Rejected(
            [
                SpecError(
                    path=nul,
                    message=f"submit has a NUL character (\\u0000) at {nul}; remove it "
                    "(weir stores every submit in Postgres, which cannot hold one)",
                )
            ],
            flow_id=given if isinstance(given, str) and "\x00" not in given else None,
        )
    flow_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    checked = check_flow(raw)
    if not checked.errors:
        return msgspec.convert(checked.value, FlowSpec)
    raise Rejected(_with_later_problems(checked, limits), flow_id, name)


def _with_later_problems(checked: Checked, limits: Limits) -> list[SpecError]:
    """The structural problems and, so that one wrong type does not hide the rest, what
    `plan` finds in the spec with the wrong parts replaced (minus what they caused)."""
    errors = list(checked.errors)
    try:
        plan(msgspec.convert(checked.value, FlowSpec), limits)
    except Rejected as later:
        errors += [e for e in later.errors if not _caused_by(e.path, checked.errors)]
    except msgspec.ValidationError:
        pass  # the replaced spec is never invalid; if it were, the problems above stand
    position = {id(e): _task_index(e.path) for e in errors}
    return sorted(errors, key=lambda e: position[id(e)])


def _caused_by(path: str, structural: list[SpecError]) -> bool:
    """Whether a problem at `path` is one already reported: at the same place, inside it,
    or in the part of a task that holds it (not the flow's own `$` or `$.tasks`)."""
    for error in structural:
        if _within(path, error.path):
            return True
        if path not in ("$", "$.tasks") and _within(error.path, path):
            return True
    return False


def _within(path: str, outer: str) -> bool:
    return path == outer or path.startswith((outer + ".", outer + "["))


def _task_index(path: str) -> int:
    match = _TASK_PATH.match(path)
    return int(match.group(1)) if match else -1


def _find_nul(raw: object) -> str | None:
    """The JSON path of the first key or string holding a NUL character, if any."""
    stack: list[tuple[str, object]] = [("$", raw)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    return path
                stack.append((f"{path}.{printable(key, 40)[1:-1]}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def plan(spec: FlowSpec, limits: Limits = Limits()) -> Plan:
    """Check names, references and the graph. Raises `Rejected` listing every problem."""
    errors: list[SpecError] = []
    flow = f"flow {printable(spec.name)}"

    def err(path: str, message: str, task: str | None = None) -> None:
        errors.append(SpecError(path=path, message=message, task=task))

    if not spec.name.strip():
        err("$.name", "flow name is empty: give the flow a name")
    elif len(spec.name) > FLOW_NAME_MAX or _CONTROL.search(spec.name):
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
    if len(spec.tasks) > limits.max_tasks:
        err(
            "$.tasks",
            f"{flow}: has {len(spec.tasks):,} tasks; the limit is {limits.max_tasks:,} "
            "(WEIR_MAX_TASKS): split it into several flows or raise the limit",
        )
        raise Rejected(errors, spec.id, spec.name)

    _check_flow_fields(spec, flow, err)
    values, problems = parameters.resolve(spec.params, spec.arguments, flow)
    errors.extend(problems)
    by_name: dict[str, TaskSpec] = {}
    outputs: dict[str, str] = {}  # output name -> producing task
    conditions: dict[str, Expr] = {}
    listed = _listed_tasks(spec)
    for path, task in listed:
        task = resolve_task(spec, task)
        where = f"{flow}: task {printable(task.name)}"
        task = _with_params(task, values, spec.params.keys(), path, where, err)
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
        _check_task_fields(task, path, where, err)
        if task.retry is not None:
            _check_retry(task.retry, f"{path}.retry", where, err, task.name)
        if task.timeout is not None and not 0 < task.timeout <= TIMEOUT_MAX:
            err(
                f"{path}.timeout",
                f"{where}: timeout must be between 0 and {TIMEOUT_MAX:,} seconds",
                task.name,
            )
        if task.priority is not None and not 0 <= task.priority <= PRIORITY_MAX:
            err(
                f"{path}.priority",
                f"{where}: priority must be between 0 (highest) and {PRIORITY_MAX}",
                task.name,
            )
        _check_artifact_paths(task, path, where, err)
        item_problem(task, path, where, err)
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
            dpath = f"{path}.depends[{d_index}]"
            if dep == task.name:
                err(dpath, f"{where}: depends on itself; remove it from depends", task.name)
            elif dep not in by_name:
                err(
                    dpath,
                    f"{where}: depends on {printable(dep)}, which does not exist (tasks: {names})",
                    task.name,
                )
            elif dep in named_deps:
                err(dpath, f"{where}: lists {printable(dep)} twice in depends", task.name)
            else:
                valid.append(dep)
                named_deps.add(dep)
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


TIMEOUT_MAX = 7 * 24 * 3600.0
PRIORITY_MAX = 1000
TAGS_MAX = 50
TAG_LENGTH_MAX = 100
RETRY_ATTEMPTS_MAX = 100


def resolve_task(spec: FlowSpec, task: TaskSpec) -> TaskSpec:
    """The task with the flow's defaults filled in where it sets nothing itself."""
    defaults = spec.defaults or TaskDefaults()
    return msgspec.structs.replace(
        task,
        queue=task.queue or defaults.queue or DEFAULT_QUEUE,
        priority=task.priority
        if task.priority is not None
        else defaults.priority
        if defaults.priority is not None
        else spec.priority,
        retry=task.retry or defaults.retry or RetryPolicy(),
        timeout=task.timeout if task.timeout is not None else defaults.timeout,
        image=task.image or defaults.image,
    )


def _check_retry(retry: RetryPolicy, path: str, where: str, err: _Err, task: str | None) -> None:
    if not 1 <= retry.max_attempts <= RETRY_ATTEMPTS_MAX:
        err(
            f"{path}.max_attempts",
            f"{where}: retry.max_attempts must be between 1 and {RETRY_ATTEMPTS_MAX}",
            task,
        )
    b = retry.backoff
    if b.base < 0 or b.min < 0 or b.max < b.min:
        err(f"{path}.backoff", f"{where}: backoff needs base >= 0 and 0 <= min <= max", task)
    if (b.factor is not None and b.factor <= 0) or (b.power is not None and b.power <= 0):
        err(f"{path}.backoff", f"{where}: backoff factor and power must be positive", task)


def _check_flow_fields(spec: FlowSpec, flow: str, err: _Err) -> None:
    if spec.defaults is not None:
        d = spec.defaults
        if d.retry is not None:
            _check_retry(d.retry, "$.defaults.retry", flow, err, None)
        if d.timeout is not None and not 0 < d.timeout <= TIMEOUT_MAX:
            err(
                "$.defaults.timeout",
                f"{flow}: defaults.timeout must be between 0 and {TIMEOUT_MAX:,} seconds",
            )
        if d.priority is not None and not 0 <= d.priority <= PRIORITY_MAX:
            err(
                "$.defaults.priority",
                f"{flow}: defaults.priority must be between 0 and {PRIORITY_MAX}",
            )
    if not 0 <= spec.priority <= PRIORITY_MAX:
        err("$.priority", f"{flow}: priority must be between 0 (highest) and {PRIORITY_MAX}")
    if spec.max_parallel is not None and spec.max_parallel < 1:
        err("$.max_parallel", f"{flow}: max_parallel must be at least 1")
    if spec.delay is not None and not 0 <= spec.delay <= 366 * 24 * 3600:
        err("$.delay", f"{flow}: delay must be between 0 and one year, in seconds")
    if spec.scheduled_at is not None and spec.scheduled_at.tzinfo is None:
        err("$.scheduled_at", f"{flow}: scheduled_at needs a time zone, e.g. 2030-01-01T09:00:00Z")
    if len(spec.tags) > TAGS_MAX:
        err("$.tags", f"{flow}: has {len(spec.tags)} tags; at most {TAGS_MAX}")
    for index, tag in enumerate(spec.tags):
        if not tag or len(tag) > TAG_LENGTH_MAX or _CONTROL.search(tag):
            err(
                f"$.tags[{index}]",
                f"{flow}: tag {printable(tag)} must be 1 to {TAG_LENGTH_MAX} printable characters",
            )
    if spec.unique is not None:
        u = spec.unique
        if not u.key or len(u.key) > 256 or _CONTROL.search(u.key):
            err("$.unique.key", f"{flow}: unique.key must be 1 to 256 printable characters")
        if u.window is not None and u.window <= 0:
            err("$.unique.window", f"{flow}: unique.window must be a positive number of seconds")
        for status in u.statuses or []:
            if status not in FLOW_STATUS_NAMES:
                err(
                    "$.unique.statuses",
                    f"{flow}: unique.statuses: {printable(status)} is not a flow status "
                    f"({', '.join(FLOW_STATUS_NAMES)})",
                )


def _check_artifact_paths(task: TaskSpec, path: str, where: str, err: _Err) -> None:
    """One spelling per file in a task: `/data/in.csv` and `/data//in.csv` are one file."""
    seen: dict[str, str] = {}
    paths = [("inputs", [i.path for i in task.inputs]), ("outputs", [o.path for o in task.outputs])]
    for kind, given in paths:
        for index, file_path in enumerate(given):
            normal = posixpath.normpath(file_path)
            other = seen.setdefault(normal, file_path)
            if other != file_path:
                err(
                    f"{path}.{kind}[{index}].path",
                    f"{where}: {kind}[{index}].path {printable(file_path)} is the file "
                    f"{printable(other)} spelt differently; spell both the same",
                    task.name,
                )


def _check_task_fields(task: TaskSpec, path: str, where: str, err: _Err) -> None:
    if not task.cmd:
        err(f"{path}.cmd", f"{where}: cmd is empty; give the program and its arguments", task.name)
    for c_index, arg in enumerate(task.cmd):
        if "\x00" in arg or len(arg) > STRING_MAX:
            err(
                f"{path}.cmd[{c_index}]",
                f"{where}: cmd[{c_index}] has a NUL byte or exceeds {STRING_MAX:,} characters",
                task.name,
            )
    if task.image is not None and (not task.image.strip() or _CONTROL.search(task.image)):
        err(f"{path}.image", f"{where}: image is empty or has control characters", task.name)
    if task.queue is not None and not QUEUE_NAME.match(task.queue):
        err(
            f"{path}.queue",
            f"{where}: queue {printable(task.queue)} must be lower-case letters, digits, "
            "'-' or '_' (it becomes a NATS subject token)",
            task.name,
        )
    seen_env: set[str] = set()
    for e_index, var in enumerate(task.env):
        epath = f"{path}.env[{e_index}]"
        if not ENV_NAME.match(var.name):
            err(
                f"{epath}.name",
                f"{where}: env name {printable(var.name)} is not an identifier "
                "(letters, digits, '_', not starting with a digit)",
                task.name,
            )
        elif var.name in seen_env:
            err(f"{epath}.name", f"{where}: env {printable(var.name)} is set twice", task.name)
        seen_env.add(var.name)
        if (var.value is None) == (var.from_secret is None):
            err(
                epath,
                f"{where}: env {printable(var.name)} needs exactly one of value or fromSecret",
                task.name,
            )
        elif var.value is not None and ("\x00" in var.value or len(var.value) > STRING_MAX):
            err(
                f"{epath}.value",
                f"{where}: env {printable(var.name)} value has a NUL byte or is too long",
                task.name,
            )
    paths = [("inputs", [i.path for i in task.inputs]), ("outputs", [o.path for o in task.outputs])]
    for kind, items in paths:
        for i_index, item_path in enumerate(items):
            problem = _path_problem(item_path)
            if problem:
                err(
                    f"{path}.{kind}[{i_index}].path",
                    f"{where}: {kind}[{i_index}].path {printable(item_path)} {problem}",
                    task.name,
                )


def _path_problem(path: str) -> str | None:
    if not path or "\x00" in path or _CONTROL.search(path):
        return "is empty or has control characters"
    if len(path) > 4096:
        return "is longer than 4096 characters"
    if ".." in path.split("/"):
        return "contains '..'; paths may not climb out of the task's directory"
    normal = posixpath.normpath(path)
    if normal in (".", "/") or path.endswith("/"):
        return "is not a file path; name a file, like out/result.json or /data/result.json"
    if (normal + "/").startswith(_KERNEL_DIRS):
        return "is in /proc, /sys or /dev, which belong to the kernel; use another directory"
    return None


def _check_inputs(
    listed: list[tuple[str, TaskSpec]],
    flow: str,
    depends: Mapping[str, tuple[str, ...]],
    outputs: Mapping[str, str],
    conditions: Mapping[str, Expr],
    spec: FlowSpec,
    err: _Err,
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
            problem = _ref_problem(ref, spec, ancestors(task.name))
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


def _ref_problem(ref: Ref, spec: FlowSpec, upstream: frozenset[str]) -> str | None:
    kind, name = ref.path[0], ref.path[1]
    if kind == "params" and name not in spec.params:
        declared = ", ".join(sorted(spec.params)) or "none are declared"
        return f"reads params.{name}, which is not declared (params: {declared})"
    if kind == "tasks" and name not in upstream:
        return (
            f"reads tasks.{name}, which is not upstream of this task; "
            "a condition reads only tasks it (indirectly) depends on"
        )
    return None


def _label(path: str) -> str:
    match = _TASK_PATH.match(path)
    return f"task #{int(match.group(1)) + 1}" if match else "the on_exit task"


def _listed_tasks(spec: FlowSpec) -> list[tuple[str, TaskSpec]]:
    """(path, task) of every task: the spec's tasks, then its on_exit task."""
    listed = [(f"$.tasks[{index}]", task) for index, task in enumerate(spec.tasks)]
    if spec.on_exit is not None:
        listed.append((ON_EXIT_PATH, spec.on_exit))
    return listed


def _with_params(
    task: TaskSpec,
    values: Mapping[str, Any],
    declared: Collection[str],
    path: str,
    where: str,
    err: _Err,
) -> TaskSpec:
    """The task with `{{ params.NAME }}` filled in its cmd, env values, image and artifact
    paths, and every parameter in its env as WEIR_PARAM_<NAME>."""

    def fill(text: str, at: str) -> str:
        filled, unknown = parameters.substitute(text, values)
        for name in unknown:
            if name.removeprefix("params.") in declared or is_item_placeholder(name):
                continue  # declared without a value: reported once, as missing; or an item
            err(
                at,
                f"{where}: {{{{ {name} }}}} names no parameter; use {{{{ params.NAME }}}} "
                f"with a declared NAME ({', '.join(sorted(values)) or 'none are declared'})",
                task.name,
            )
        return filled

    cmd = [fill(arg, f"{path}.cmd[{i}]") for i, arg in enumerate(task.cmd)]
    env = [
        msgspec.structs.replace(var, value=fill(var.value, f"{path}.env[{i}].value"))
        if var.value is not None
        else var
        for i, var in enumerate(task.env)
    ]
    own = {var.name for var in env}
    env += [
        EnvVar(name=f"{parameters.ENV_PREFIX}{name}", value=parameters.render(value))
        for name, value in sorted(values.items())
        if f"{parameters.ENV_PREFIX}{name}" not in own
    ]
    inputs = [
        Input(from_=item.from_, path=fill(item.path, f"{path}.inputs[{i}].path"))
        for i, item in enumerate(task.inputs)
    ]
    outputs = [
        Output(name=item.name, path=fill(item.path, f"{path}.outputs[{i}].path"))
        for i, item in enumerate(task.outputs)
    ]
    image = fill(task.image, f"{path}.image") if task.image is not None else None
    return msgspec.structs.replace(
        task, cmd=cmd, env=env, inputs=inputs, outputs=outputs, image=image
    )


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


class _Err(Protocol):
    def __call__(self, path: str, message: str, task: str | None = None) -> None: ...
