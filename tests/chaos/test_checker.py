"""The checker itself: it must see overlapping executions, runs that vanished, a finished
task run again and a step the log does not hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.chaos.checker import overlaps, read_trail, steps_missing, succeeded_again


def _trail(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "trail.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_checker_sees_an_attempt_starting_while_another_runs(tmp_path: Path) -> None:
    runs = read_trail(
        _trail(
            tmp_path,
            [
                "start f a 1 100 10.0",
                "start f a 2 200 10.5",  # inside attempt 1's run
                "end f a 2 200 10.7",
                "end f a 1 100 12.0",
                "start f b 1 300 10.0",
                "end f b 1 300 11.0",
                "start f b 2 301 11.5",  # after: fine
                "end f b 2 301 12.0",
            ],
        )
    )
    problems = overlaps(runs, runner_kills=[])
    assert len(problems) == 1 and "task a attempt 2" in problems[0]


def test_checker_bounds_a_killed_run_by_the_next_runner_kill(tmp_path: Path) -> None:
    runs = read_trail(
        _trail(
            tmp_path,
            [
                "start f a 1 100 10.0",  # killed with its runner at 11.0
                "start f a 1 200 13.0",  # redelivered after the kill: fine
                "end f a 1 200 14.0",
                "start f c 1 400 20.0",  # never ended and no kill after it
                "start f d 1 500 10.0",
                "start f d 1 501 10.5",  # before the kill at 11.0: ran concurrently
                "end f d 1 501 12.0",
            ],
        )
    )
    problems = overlaps(runs, runner_kills=[11.0])
    assert any("task c" in p and "never ended" in p for p in problems)
    assert any("task d" in p for p in problems)
    assert not any("task a" in p for p in problems)


def _event(
    flow: str, kind: str, task: str | None = None, planned: list[str] | None = None
) -> dict[str, Any]:
    return {
        "flow_id": flow,
        "type": kind,
        "task": task,
        "planned": json.dumps(planned) if planned is not None else None,
    }


def test_checker_sees_a_finished_task_run_again_unless_a_retry_planned_it() -> None:
    rows = [
        _event("f", "task_succeeded", "a"),
        _event("f", "task_succeeded", "a"),  # again, no retry: a violation
        _event("f", "task_succeeded", "each[0]"),
        _event("f", "task_succeeded", "b"),
        _event("f", "task_retried", "b", planned=["b", "each"]),
        _event("f", "task_succeeded", "b"),  # retried: fine
        _event("f", "task_succeeded", "each[0]"),  # its mapped task was planned again: fine
        _event("g", "task_succeeded", "b"),  # another flow
    ]
    assert succeeded_again(rows) == ["flow f: task a succeeded again without a retry"]


def test_checker_sees_a_step_answered_as_made_that_the_log_lacks() -> None:
    rows = [
        _event("f", "flow_paused"),
        _event("f", "flow_resumed"),
        _event("g", "task_retried", "x", planned=["x"]),
    ]
    stepped = [
        ("f", "pause", None),
        ("f", "resume", None),
        ("g", "retry", "x"),
        ("g", "pause", None),  # not in the log
        ("f", "retry", "y"),  # not in the log
    ]
    assert steps_missing(rows, stepped) == [
        "flow f: retry of task y was answered as made 1 time(s), but the log holds 0 task_retried",
        "flow g: pause was answered as made 1 time(s), but the log holds 0 flow_paused",
    ]
