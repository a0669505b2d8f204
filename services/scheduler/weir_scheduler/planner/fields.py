"""Each field's own rules (names, sizes, ranges, paths, env), the flow's defaults applied to
a task, and `{{ params.NAME }}` filled in: what the planner checks one task or field at a time."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Mapping
from typing import Any, Protocol

import msgspec
from weir_proto import params as parameters
from weir_proto.spec import (
    EnvVar,
    FlowSpec,
    Input,
    Output,
    RetryPolicy,
    TaskDefaults,
    TaskSpec,
    retry_policy,
)
from weir_proto.status import FLOW_STATUS_NAMES
from weir_proto.subjects import DEFAULT_QUEUE
from weir_proto.validation import printable

from weir_scheduler.map_plan import is_item_placeholder, task_texts

FLOW_NAME_MAX = 253
STRING_MAX = 64 * 1024
"""Longest single string (argv element, env value, path) we accept."""
_KERNEL_DIRS = ("/proc/", "/sys/", "/dev/")

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
QUEUE_NAME = re.compile(r"^[a-z0-9]([-_a-z0-9]{0,62})$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TASK_PATH = re.compile(r"^\$\.tasks\[(\d+)\]")
ON_EXIT_PATH = "$.on_exit"

TIMEOUT_MAX = 7 * 24 * 3600.0
PRIORITY_MAX = 1000
TAGS_MAX = 50
TAG_LENGTH_MAX = 100
RETRY_ATTEMPTS_MAX = 100


class Err(Protocol):
    """Where a check reports a problem: its JSON path, the message, the task it is in."""

    def __call__(self, path: str, message: str, task: str | None = None) -> None: ...


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
        retry=retry_policy(task, defaults),
        timeout=task.timeout if task.timeout is not None else defaults.timeout,
        image=task.image or defaults.image,
    )


def check_retry(retry: RetryPolicy, path: str, where: str, err: Err, task: str | None) -> None:
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


def check_flow_fields(spec: FlowSpec, flow: str, err: Err) -> None:
    if spec.defaults is not None:
        d = spec.defaults
        if d.retry is not None:
            check_retry(d.retry, "$.defaults.retry", f"{flow}: defaults", err, None)
        check_queue(d.queue, "$.defaults", f"{flow}: defaults", err, None)
        if d.timeout is not None and not 0 < d.timeout <= TIMEOUT_MAX:
            err(
                "$.defaults.timeout",
                f"{flow}: defaults.timeout must be between 0 and {TIMEOUT_MAX:,g} seconds",
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
        if not tag or len(tag) > TAG_LENGTH_MAX or CONTROL.search(tag):
            err(
                f"$.tags[{index}]",
                f"{flow}: tag {printable(tag)} must be 1 to {TAG_LENGTH_MAX} printable characters",
            )
    if spec.unique is not None:
        u = spec.unique
        if not u.key or len(u.key) > 256 or CONTROL.search(u.key):
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


def check_artifact_paths(task: TaskSpec, path: str, where: str, err: Err) -> None:
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


def check_queue(queue: str | None, path: str, where: str, err: Err, task: str | None) -> None:
    if queue is not None and not QUEUE_NAME.match(queue):
        err(
            f"{path}.queue",
            f"{where}: queue {printable(queue)} must be lower-case letters, digits, "
            "'-' or '_' (it becomes a NATS subject token)",
            task,
        )


def check_task_fields(task: TaskSpec, path: str, where: str, err: Err) -> None:
    if not task.cmd:
        err(f"{path}.cmd", f"{where}: cmd is empty; give the program and its arguments", task.name)
    for c_index, arg in enumerate(task.cmd):
        if "\x00" in arg or len(arg) > STRING_MAX:
            err(
                f"{path}.cmd[{c_index}]",
                f"{where}: cmd[{c_index}] has a NUL byte or exceeds {STRING_MAX:,} characters",
                task.name,
            )
    if task.image is not None and (not task.image.strip() or CONTROL.search(task.image)):
        err(f"{path}.image", f"{where}: image is empty or has control characters", task.name)
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
            problem = path_problem(item_path)
            if problem:
                err(
                    f"{path}.{kind}[{i_index}].path",
                    f"{where}: {kind}[{i_index}].path {printable(item_path)} {problem}",
                    task.name,
                )


def path_problem(path: str) -> str | None:
    if not path or "\x00" in path or CONTROL.search(path):
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


def with_params(
    task: TaskSpec,
    values: Mapping[str, Any],
    declared: Collection[str],
    path: str,
    where: str,
    err: Err,
) -> TaskSpec:
    """The task with `{{ params.NAME }}` filled in its cmd, env values, image and artifact
    paths, and every parameter in its env as WEIR_PARAM_<NAME>."""
    if not values and not any("{{" in text for text in task_texts(task)):
        return task  # nothing to fill, and no parameter to pass on (most tasks of a big flow)

    def fill(text: str, at: str) -> str:
        filled, unknown = parameters.substitute(text, values)
        for name in unknown:
            if name.removeprefix("params.") in declared or is_item_placeholder(name):
                continue  # declared without a value: reported once, as missing; or an item
            if name.startswith("schedule."):
                err(
                    at,
                    f"{where}: {{{{ {name} }}}} is filled only in the flows of a cron schedule, "
                    "and only {{ schedule.time }} (weir schedule create; docs/jobs.md)",
                    task.name,
                )
                continue
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
