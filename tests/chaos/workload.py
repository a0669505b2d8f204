"""The chaos workload: many small flows of mixed shapes whose tasks leave a trail.

Every task appends `start` and `end` lines (flow, task, attempt, shell pid, wall time) to one
trail file, so the checker can see each execution of each attempt and whether two of them
overlapped. Some tasks fail on purpose: a few until their third attempt (they retry with a
quick constant backoff), a few always (their flow fails).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RETRY = {"max_attempts": 3, "backoff": {"strategy": "constant", "base": 0.2, "jitter": None}}

_LINE = 'echo "{word} $WEIR_FLOW_ID $WEIR_TASK $WEIR_ATTEMPT $$ $(date +%s.%N)" >> "$TRAIL"'


def _script(sleep: float, behaviour: str) -> str:
    """A task body: start line, some work, end line, then the exit `behaviour` wants."""
    exit_code = {
        "ok": "0",
        "flaky": '$([ "$WEIR_ATTEMPT" -ge 3 ] && echo 0 || echo 1)',
        "broken": "1",
    }[behaviour]
    return (
        f"{_LINE.format(word='start')}; sleep {sleep:.2f}; "
        f"{_LINE.format(word='end')}; exit {exit_code}"
    )


@dataclass(frozen=True)
class Submitted:
    """A submit the driver sent; `acked` once JetStream (or the API) acknowledged it."""

    flow_id: str
    shape: str
    via: str
    expect_rejection: bool = False


def _task(
    name: str, trail: Path, rng: random.Random, depends: list[str], behaviour: str
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": name,
        "cmd": ["sh", "-c", _script(rng.uniform(0.05, 0.4), behaviour)],
        "env": [{"name": "TRAIL", "value": str(trail)}],
        "retry": RETRY,
    }
    if depends:
        task["depends"] = depends
    return task


def _behaviour(rng: random.Random) -> str:
    roll = rng.random()
    return "broken" if roll < 0.04 else "flaky" if roll < 0.2 else "ok"


def flow_spec(flow_id: str, trail: Path, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One flow of a random shape: chain, fan-out/fan-in, diamond or a single task."""
    shape = rng.choice(["chain", "fan", "diamond", "single"])
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
    else:
        tasks.append(_task("only", trail, rng, [], _behaviour(rng)))
    rng.shuffle(tasks)  # the planner must not depend on the listing order
    return shape, {"id": flow_id, "name": f"chaos-{shape}", "tasks": tasks}


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
