"""Mapped tasks (`map: {over: OUTPUT}`): what the planner checks at submit, and the spec of
each instance `NAME[i]` once the list is known.

An instance is its task with `{{ item }}` replaced by the item (a string as it is, anything
else as JSON) in `cmd`, `env` values, `image` and artifact paths, `WEIR_ITEM` set to the
item as JSON, and each output renamed `OUTPUT.i`: the mapped task's own output `OUTPUT` is
the JSON list of its instances' outputs, in item order, gathered once they all succeeded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from weir_proto.spec import EnvVar, Input, Output, TaskSpec
from weir_proto.validation import printable

if TYPE_CHECKING:
    from weir_scheduler.planner import Plan

ITEM_ENV = "WEIR_ITEM"
ITEM_PLACEHOLDER = "item"
"""`{{ item }}`: the placeholder an instance's item fills."""
_ITEM = re.compile(r"\{\{\s*item\s*\}\}")
_PART = re.compile(r"^(.+)\.(\d+)\Z")


class _Err(Protocol):
    def __call__(self, path: str, message: str, task: str | None = None) -> None: ...


def instance_name(task: str, index: int) -> str:
    """`NAME[i]`: the i-th instance of mapped task `NAME`."""
    return f"{task}[{index}]"


def parent_of(name: str) -> tuple[str, int] | None:
    """(task, index) when `name` is an instance `NAME[i]`, else None."""
    if not name.endswith("]"):
        return None
    head, _, index = name[:-1].rpartition("[")
    return (head, int(index)) if head and index.isdigit() else None


def instances(plan: Plan, task: str) -> list[str]:
    """The instances of mapped `task` in item order (none before its expansion)."""
    names: list[str] = []
    while (name := instance_name(task, len(names))) in plan.tasks:
        names.append(name)
    return names


def part_name(output: str, index: int) -> str:
    """The name instance `index` uploads output `output` under: `OUTPUT.i`."""
    return f"{output}.{index}"


def item_text(item: Any) -> str:
    """What `{{ item }}` stands for: a string as it is, anything else as JSON."""
    return item if isinstance(item, str) else item_json(item)


def item_json(item: Any) -> str:
    return json.dumps(item, separators=(",", ":"), sort_keys=True)


def fill_item(value: str, item: Any) -> str:
    """`value` with `{{ item }}` replaced by `item` (whole, never through a shell)."""
    if "{{" not in value:
        return value
    text = item_text(item)
    return _ITEM.sub(lambda _: text, value)


def instance_spec(task: TaskSpec, index: int, item: Any) -> TaskSpec:
    """The spec instance `index` of mapped `task` runs, with `item`."""

    def fill(value: str) -> str:
        return fill_item(value, item)

    env = [
        msgspec.structs.replace(var, value=fill(var.value)) if var.value is not None else var
        for var in task.env
        if var.name != ITEM_ENV
    ]
    return msgspec.structs.replace(
        task,
        name=instance_name(task.name, index),
        cmd=[fill(arg) for arg in task.cmd],
        env=[*env, EnvVar(name=ITEM_ENV, value=item_json(item))],
        image=fill(task.image) if task.image is not None else None,
        inputs=[Input(from_=i.from_, path=fill(i.path)) for i in task.inputs],
        outputs=[Output(name=part_name(o.name, index), path=fill(o.path)) for o in task.outputs],
        depends=[],
        map=None,
        when=None,
    )


def is_item_placeholder(name: str) -> bool:
    """Whether a placeholder the parameters did not fill is `{{ item }}`."""
    return name == ITEM_PLACEHOLDER


def check_maps(
    listed: list[tuple[str, TaskSpec]],
    flow: str,
    depends: Mapping[str, tuple[str, ...]],
    outputs: Mapping[str, str],
    on_exit: str | None,
    err: _Err,
) -> None:
    """Each `map.over` names an output of one of the task's own dependencies, `max_items`
    is positive, the on_exit task is not mapped, and no output is named like an instance's
    part of a mapped task's output (`OUTPUT.i`)."""
    mapped_outputs = {o.name for _, t in listed if t.map is not None for o in t.outputs}
    for path, task in listed:
        where = f"{flow}: task {printable(task.name)}"
        for index, output in enumerate(task.outputs):
            part = _PART.match(output.name)
            if part and part.group(1) in mapped_outputs:
                err(
                    f"{path}.outputs[{index}].name",
                    f"{where}: output {printable(output.name)} is the name an instance of a "
                    f"mapped task gives its part of output {printable(part.group(1))}; "
                    "rename it",
                    task.name,
                )
        if task.map is None:
            continue
        if task.name == on_exit:
            err(f"{path}.map", f"{where}: the on_exit task cannot be mapped; remove map", task.name)
            continue
        over = task.map.over
        producer = outputs.get(over)
        deps = depends.get(task.name, ())
        if producer is None:
            offered = sorted(o for o, t in outputs.items() if t in deps)
            err(
                f"{path}.map.over",
                f"{where}: map.over {printable(over)} is not an output of any task "
                f"(outputs of its dependencies: {', '.join(offered) or 'none'})",
                task.name,
            )
        elif producer not in deps:
            err(
                f"{path}.map.over",
                f"{where}: map.over {printable(over)} comes from task {printable(producer)}, "
                "which is not one of its dependencies; add it to depends",
                task.name,
            )
        if task.map.max_items is not None and task.map.max_items < 1:
            err(
                f"{path}.map.max_items",
                f"{where}: map.max_items must be at least 1 (leave it out for no limit "
                "but WEIR_MAX_TASKS)",
                task.name,
            )


def task_texts(task: TaskSpec) -> list[str]:
    """Every string of a task that placeholders may stand in: its cmd, env values, artifact
    paths and image."""
    return [
        *task.cmd,
        *(v.value for v in task.env if v.value is not None),
        *(i.path for i in task.inputs),
        *(o.path for o in task.outputs),
        *([task.image] if task.image else []),
    ]


def item_problem(task: TaskSpec, path: str, where: str, err: _Err) -> None:
    """`{{ item }}` in a task that is not mapped has nothing to stand for."""
    if task.map is not None:
        return
    if any("{{" in text and _ITEM.search(text) for text in task_texts(task)):
        err(
            path,
            f"{where}: uses {{{{ item }}}} but is not mapped; add map: {{over: OUTPUT}} "
            "or remove the placeholder",
            task.name,
        )


def with_instances(plan: Plan, task: str, items: Sequence[Any]) -> Plan:
    """`plan` with the instances of mapped `task` added: each a task of its own (no
    dependencies: it runs once the list is known), listed after every task so far, in the
    order just before `task`."""
    spec = plan.tasks[task]
    specs = {instance_name(task, i): instance_spec(spec, i, item) for i, item in enumerate(items)}
    base = len(plan.names)
    at = plan.order.index(task)
    return replace(
        plan,
        tasks={**plan.tasks, **specs},
        depends={**plan.depends, **dict.fromkeys(specs, ())},
        dependents={**plan.dependents, **dict.fromkeys(specs, ())},
        positions={**plan.positions, **{name: base + i for i, name in enumerate(specs)}},
        producers={
            **plan.producers,
            **{o.name: name for name, s in specs.items() for o in s.outputs},
        },
        names=(*plan.names, *specs),
        order=(*plan.order[:at], *specs, *plan.order[at:]),
    )


def without_instances(plan: Plan, task: str) -> Plan:
    """`plan` as before mapped `task`'s expansion: its instances gone, and the tasks listed
    after them numbered again, so `names[positions[n]] == n` still holds."""
    dropped = set(instances(plan, task))
    if not dropped:
        return plan
    names = tuple(n for n in plan.names if n not in dropped)
    parts = {o.name for n in dropped for o in plan.tasks[n].outputs}
    return replace(
        plan,
        tasks={n: s for n, s in plan.tasks.items() if n not in dropped},
        depends={n: d for n, d in plan.depends.items() if n not in dropped},
        dependents={n: d for n, d in plan.dependents.items() if n not in dropped},
        positions={name: i for i, name in enumerate(names)},
        producers={o: p for o, p in plan.producers.items() if o not in parts},
        names=names,
        order=tuple(n for n in plan.order if n not in dropped),
    )
