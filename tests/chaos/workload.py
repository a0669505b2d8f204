"""The chaos workload: many small flows of mixed shapes whose tasks leave a trail.

Every task appends `start` and `end` lines (flow, task, attempt, shell pid, wall time) to one
trail file, so the checker can see each execution of each attempt and whether two of them
overlapped. Some tasks fail on purpose: a few until their third attempt (they retry with a
quick constant backoff), a few always (their flow fails), a few until they are retried with
`weir retry` (their flow fails, then succeeds once the driver retries them). Some flows map
a task over a list an upstream task wrote (0 to 4 items), so instances `NAME[i]` run,
retry and get killed like any task.

Two shapes exercise what a flow decides at run time. A `gates` flow has a `check` task that
writes `go` or `stop` (or fails), tasks after it gated by `when` conditions over params and
that output, cleanup and alert tasks under trigger rules, and an `on_exit` task: what each
task must end as follows from the spec and how `check` ended (`expected_gates`). A
`scheduled` flow is submitted to start far later with params, and the driver moves its start
close and changes its params with `weir update`; its tasks write the params they got. Tasks
write `param` and `status` lines to the trail beside `start` and `end`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RETRY = {"max_attempts": 3, "backoff": {"strategy": "constant", "base": 0.2, "jitter": None}}

_LINE = 'echo "{word} $WEIR_FLOW_ID $WEIR_TASK $WEIR_ATTEMPT $$ $(date +%s.%N)" >> "$TRAIL"'
_NOTE = 'echo "{word} $WEIR_FLOW_ID $WEIR_TASK $WEIR_ATTEMPT $$ {value}" >> "$TRAIL"'
"""A line the checker reads as what the task saw: its params, or the flow's status."""


MAP_ITEMS_MAX = 4
FIXABLE_SHARE = 0.12
"""Flows with one task that fails until `weir retry` gives it attempts past its budget."""


def _script(sleep: float, behaviour: str, work: str = "") -> str:
    """A task body: start line, some work, end line, then the exit `behaviour` wants."""
    exit_code = {
        "ok": "0",
        "flaky": '$([ "$WEIR_ATTEMPT" -ge 3 ] && echo 0 || echo 1)',
        "broken": "1",
        "fixable": f'$([ "$WEIR_ATTEMPT" -gt {RETRY["max_attempts"]} ] && echo 0 || echo 1)',
    }[behaviour]
    return (
        f"{_LINE.format(word='start')}; sleep {sleep:.2f}; {work}"
        f"{_LINE.format(word='end')}; exit {exit_code}"
    )


@dataclass(frozen=True)
class Workload:
    """One flow to submit: its `shape`, its `spec`, and the task (if any) that fails until
    it is retried, which the driver retries once the flow has failed."""

    shape: str
    spec: dict[str, Any]
    fixable: str | None = None


@dataclass(frozen=True)
class Submitted:
    """A submit the driver sent; `acked` once JetStream (or the API) acknowledged it."""

    flow_id: str
    shape: str
    via: str
    expect_rejection: bool = False


def _task(
    name: str,
    trail: Path,
    rng: random.Random,
    depends: list[str],
    behaviour: str,
    work: str = "",
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": name,
        "cmd": ["sh", "-c", _script(rng.uniform(0.05, 0.4), behaviour, work)],
        "env": [{"name": "TRAIL", "value": str(trail)}],
        "retry": RETRY,
    }
    if depends:
        task["depends"] = depends
    return task


def _behaviour(rng: random.Random) -> str:
    roll = rng.random()
    return "broken" if roll < 0.04 else "flaky" if roll < 0.2 else "ok"


SHAPES = ("chain", "fan", "diamond", "single", "map", "gates", "scheduled")
STEPLESS_SHAPES = ("gates", "scheduled")
"""Shapes never given a task that fails until retried (their expectations assume none) nor
paused (an update needs a flow that is scheduled, not paused)."""


def flow_spec(
    flow_id: str,
    trail: Path,
    rng: random.Random,
    shape: str | None = None,
    fixable: bool | None = None,
) -> Workload:
    """One flow of a random shape (chain, fan-out/fan-in, diamond, a single task or a map),
    or of `shape`; with a task that fails until retried at random, or as `fixable` says."""
    shape = shape or rng.choice(SHAPES)
    tasks: list[dict[str, Any]] = []
    if shape == "chain":
        for i in range(rng.randint(2, 5)):
            depends = [f"c{i - 1}"] if i else []
            tasks.append(_task(f"c{i}", trail, rng, depends, _behaviour(rng)))
    elif shape == "fan":
        width = rng.randint(2, 6)
        tasks.append(_task("split", trail, rng, [], _behaviour(rng)))
        for i in range(width):
            tasks.append(_task(f"w{i}", trail, rng, ["split"], _behaviour(rng)))
        tasks.append(_task("join", trail, rng, [f"w{i}" for i in range(width)], "ok"))
    elif shape == "diamond":
        tasks.append(_task("top", trail, rng, [], _behaviour(rng)))
        tasks.append(_task("left", trail, rng, ["top"], _behaviour(rng)))
        tasks.append(_task("right", trail, rng, ["top"], _behaviour(rng)))
        tasks.append(_task("bottom", trail, rng, ["left", "right"], _behaviour(rng)))
    elif shape == "map":
        tasks.extend(_map_tasks(trail, rng))
    elif shape == "gates":
        return _gates(flow_id, trail, rng)
    elif shape == "scheduled":
        return _scheduled(flow_id, trail, rng)
    else:
        tasks.append(_task("only", trail, rng, [], _behaviour(rng)))
    retried = None
    if fixable or (fixable is None and rng.random() < FIXABLE_SHARE):
        plain = [t for t in tasks if "map" not in t]
        chosen = plain[rng.randrange(len(plain))]
        chosen["cmd"][2] = _script(rng.uniform(0.05, 0.2), "fixable")
        retried = chosen["name"]
    rng.shuffle(tasks)  # the planner must not depend on the listing order
    return Workload(shape, {"id": flow_id, "name": f"chaos-{shape}", "tasks": tasks}, retried)


def _map_tasks(trail: Path, rng: random.Random) -> list[dict[str, Any]]:
    """`list` writes a JSON list (maybe empty), `each` runs once per item, `gather` after."""
    items = list(range(rng.randint(0, MAP_ITEMS_MAX)))
    write = f"echo '{items}' > items.json; "
    listing = _task("list", trail, rng, [], _behaviour(rng), work=write)
    listing["outputs"] = [{"name": "items", "path": "items.json"}]
    each = _task("each", trail, rng, ["list"], _behaviour(rng))
    each["cmd"] += ["sh", "{{ item }}"]  # $1 is the item
    each["map"] = {"over": "items", "max_items": MAP_ITEMS_MAX}
    return [listing, each, _task("gather", trail, rng, ["each"], "ok")]


GATES_WHEN = {
    "deploy": 'tasks.check.outputs.decision == "go" and params.env == "prod"',
    "hold": 'tasks.check.outputs.decision == "stop"',
    "prod-only": 'params.env == "prod"',
}
GATES_TRIGGER = {"notify": "one_success", "audit": "none_failed", "cleanup": "all_done"}
GATES_DEPENDS = {
    "deploy": ["check"],
    "hold": ["check"],
    "prod-only": ["check"],
    "notify": ["deploy", "hold"],
    "audit": ["deploy", "hold"],
    "cleanup": ["check"],
    "alert": ["check"],
}
GATES_BROKEN_SHARE = 0.25
"""`gates` flows whose `check` fails (every attempt)."""


def _gates(flow_id: str, trail: Path, rng: random.Random) -> Workload:
    """`check` writes `go` or `stop` or fails; `deploy`, `hold` and `prod-only` run as their
    `when` says; `notify` (one_success) and `audit` (none_failed) after those two; `cleanup`
    (all_done) and `alert` (one_failed or all_failed over `check`) after `check`; `report`
    is the on_exit task and writes WEIR_FLOW_STATUS. Every task writes the `env` it got.
    Only `check` may fail on purpose, and every task runs after it, so how it ended decides
    every other task's end, whatever ran when."""
    decision = rng.choice(("go", "stop"))
    env = rng.choice(("prod", "dev", None))  # None: the default, dev
    broken = rng.random() < GATES_BROKEN_SHARE
    seen = _NOTE.format(word="param", value="env=$1") + "; "
    check = _task(
        "check",
        trail,
        rng,
        [],
        "broken" if broken else "ok",
        work=f"echo {decision} > decision.txt; {seen}",
    )
    check["outputs"] = [{"name": "decision", "path": "decision.txt"}]
    tasks = [check]
    triggers = dict(GATES_TRIGGER, alert=rng.choice(("one_failed", "all_failed")))
    for name, depends in GATES_DEPENDS.items():
        task = _task(name, trail, rng, depends, "ok", work=seen)
        if name in GATES_WHEN:
            task["when"] = GATES_WHEN[name]
        if name in triggers:
            task["trigger"] = triggers[name]
        tasks.append(task)
    for task in tasks:
        task["cmd"] += ["sh", "{{ params.env }}"]
    status = _NOTE.format(word="status", value="$WEIR_FLOW_STATUS") + "; "
    report = _task("report", trail, rng, [], "ok", work=status)
    rng.shuffle(tasks)
    spec: dict[str, Any] = {
        "id": flow_id,
        "name": "chaos-gates",
        "params": {"env": {"type": "string", "default": "dev"}},
        "tasks": tasks,
        "on_exit": report,
        "metadata": {"decision": decision, "broken": broken},  # what the checker expects
    }
    if env is not None:
        spec["arguments"] = {"env": env}
    return Workload("gates", spec)


SCHEDULED_LATER = 25.0
"""Seconds after its submit a `scheduled` flow would start if no update moved it."""


def _scheduled(flow_id: str, trail: Path, rng: random.Random) -> Workload:
    """Two tasks that write the params they got (`{{ params.tag }}` as an argument and
    WEIR_PARAM_n), submitted to start `SCHEDULED_LATER` seconds from now."""
    seen = _NOTE.format(word="param", value="tag=$1,n=$WEIR_PARAM_n") + "; "
    first = _task("first", trail, rng, [], "ok", work=seen)
    second = _task("second", trail, rng, ["first"], "ok", work=seen)
    for task in (first, second):
        task["cmd"] += ["sh", "{{ params.tag }}"]
    spec = {
        "id": flow_id,
        "name": "chaos-scheduled",
        "delay": SCHEDULED_LATER,
        "params": {"tag": {"type": "string"}, "n": 1},
        "arguments": {"tag": "submitted"},
        "tasks": [second, first],
    }
    return Workload("scheduled", spec)


def update_for(n: int) -> dict[str, Any]:
    """The params `weir update` gives the `n`th flow, a `scheduled` one."""
    return {"tag": f"updated-{n}", "n": 3}


def invalid_spec(flow_id: str) -> dict[str, Any]:
    """A submit that must become a rejection: a cycle."""
    return {
        "id": flow_id,
        "name": "chaos-invalid",
        "tasks": [
            {"name": "a", "cmd": ["true"], "depends": ["b"]},
            {"name": "b", "cmd": ["true"], "depends": ["a"]},
        ],
    }
