"""The checker itself: it must see overlapping executions, runs that vanished, a finished
task run again, a step the log does not hold, and a flow or task that ended otherwise than
its spec implies."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.chaos.checker import overlaps, read_trail, steps_missing, succeeded_again
from tests.chaos.expectations import (
    Event,
    Expected,
    FlowLog,
    Note,
    expected_gates,
    gates_problems,
    outcome_problems,
    scheduled_problems,
)
from tests.chaos.workload import flow_spec, update_for


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


T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _log(flow: str, events: list[tuple[str, dict[str, Any]]]) -> FlowLog:
    """A flow's log: each event `at` one second after the one before."""
    log = FlowLog(flow)
    for seq, (kind, data) in enumerate(events, start=1):
        at = T0 + timedelta(seconds=seq)
        log.events.append(Event(seq, kind, data.get("task"), at, data))
    return log


def _gates_spec(decision: str, env: str | None, broken: bool = False) -> dict[str, Any]:
    spec = flow_spec("f", Path("trail"), random.Random(1), shape="gates").spec
    spec["metadata"] = {"decision": decision, "broken": broken}
    spec.pop("arguments", None)
    if env is not None:
        spec["arguments"] = {"env": env}
    for task in spec["tasks"]:
        if task["name"] == "alert":
            task["trigger"] = "one_failed"
    return spec


def _gates_run(spec: dict[str, Any], ends: dict[str, Expected]) -> list[tuple[str, dict[str, Any]]]:
    """The events of a run where each task ended as `ends` says, `report` last."""
    events: list[tuple[str, dict[str, Any]]] = [("flow_submitted", {"spec": spec})]
    for name, end in ends.items():
        if end.status == "skipped":
            events.append(("task_skipped", {"task": name, "reason": end.reason}))
            continue
        events.append(("task_dispatched", {"task": name}))
        if end.status == "succeeded":
            events.append(("task_succeeded", {"task": name}))
        else:
            events.append(("task_failed", {"task": name, "error_type": "exit_code"}))
    failed = any(e.status == "failed" for e in ends.values())
    events.append(("flow_failed" if failed else "flow_succeeded", {}))
    return events


def _notes(flow: str, status: str) -> list[Note]:
    return [Note("status", flow, "report", 1, status)]


def test_a_gates_flow_that_ended_as_its_spec_implies_passes() -> None:
    for decision, env, broken in [
        ("go", "prod", False),
        ("stop", None, False),
        ("go", "dev", True),
    ]:
        spec = _gates_spec(decision, env, broken)
        ends = expected_gates(spec, check_succeeded=not broken)
        log = _log("f", _gates_run(spec, ends))
        status = "failed" if broken else "succeeded"
        assert gates_problems(log, status, _notes("f", status)) == ([], False)


def test_the_checker_sees_a_task_run_though_its_condition_is_false() -> None:
    spec = _gates_spec("stop", "prod")
    ends = expected_gates(spec, check_succeeded=True)
    assert ends["deploy"].reason == (
        'condition is false: tasks.check.outputs.decision == "go" and params.env == "prod"'
    )
    ends["deploy"] = Expected("succeeded")
    problems, _ = gates_problems(
        _log("f", _gates_run(spec, ends)), "succeeded", _notes("f", "succeeded")
    )
    assert problems == ["flow f: task deploy ended succeeded, the spec implies skipped"]


def test_the_checker_sees_a_skip_with_the_wrong_reason_and_a_flow_status_not_implied() -> None:
    spec = _gates_spec("go", "dev", broken=True)
    ends = expected_gates(spec, check_succeeded=False)
    ends["hold"] = Expected("skipped", "condition is false: x")
    log = _log("f", _gates_run(spec, ends))
    problems, _ = gates_problems(log, "succeeded", _notes("f", "failed"))
    assert problems == [
        "flow f: task hold was skipped with reason 'condition is false: x', the spec implies "
        "'upstream task \"check\" failed'",
        "flow f: ended succeeded, the spec implies failed",
    ]


def _deployed() -> list[tuple[str, dict[str, Any]]]:
    """The events of a `gates` flow that went as planned: `check` said go, in prod."""
    spec = _gates_spec("go", "prod")
    return _gates_run(spec, expected_gates(spec, check_succeeded=True))


def test_the_checker_sees_on_exit_early_or_twice_or_told_the_wrong_status() -> None:
    events = _deployed()
    events.insert(1, ("task_dispatched", {"task": "report"}))  # before every other task ended
    events.insert(-1, ("task_succeeded", {"task": "cleanup"}))  # the cleanup twice
    problems, _ = gates_problems(_log("f", events), "succeeded", _notes("f", "failed"))
    assert problems == [
        "flow f: on_exit task report was handed out before ['alert', 'audit', 'check', "
        "'cleanup', 'deploy', 'hold', 'notify', 'prod-only'] ended",
        "flow f: on_exit task report got WEIR_FLOW_STATUS=failed, not succeeded",
        "flow f: task cleanup succeeded 2 times, not once",
    ]


def test_a_fault_that_fails_a_task_leaves_only_the_rules_that_hold_anyway() -> None:
    events = _deployed()
    lost = events.index(("task_succeeded", {"task": "deploy"}))
    events[lost] = ("task_failed", {"task": "deploy", "error_type": "lost"})
    events[-1] = ("flow_failed", {})
    problems, disturbed = gates_problems(_log("f", events), "failed", _notes("f", "failed"))
    assert (problems, disturbed) == ([], True)
    # a non-zero exit or an unreadable output of a task meant to succeed is no fault's doing
    for error_type in ("exit_code", "condition"):
        events[lost] = ("task_failed", {"task": "deploy", "error_type": error_type})
        problems, disturbed = gates_problems(_log("f", events), "failed", _notes("f", "failed"))
        assert not disturbed
        assert "flow f: task deploy ended failed, the spec implies succeeded" in problems


def test_the_checker_sees_a_flow_status_its_tasks_do_not_imply() -> None:
    log = _log("f", [("task_failed", {"task": "a", "error_type": "exit_code"})])
    assert outcome_problems(log, "succeeded") == [
        "flow f: ended succeeded, but tasks ['a'] failed: it must be failed"
    ]
    assert outcome_problems(_log("g", [("task_succeeded", {"task": "a"})]), "failed") == [
        "flow g: ended failed, but no task failed: it must be succeeded"
    ]


def _scheduled_log(at: datetime, tag: str) -> FlowLog:
    spec = flow_spec("f", Path("trail"), random.Random(1), shape="scheduled").spec
    updated = dict(spec, scheduled_at=at.isoformat(), arguments={"tag": tag, "n": 3})
    return _log(
        "f",
        [
            ("flow_submitted", {"spec": spec, "start_at": (T0 + timedelta(minutes=1)).isoformat()}),
            ("flow_updated", {"spec": updated, "start_at": at.isoformat()}),
            ("task_dispatched", {"task": "first"}),  # at T0 + 3s
        ],
    )


def test_an_updated_flow_started_after_its_new_start_with_its_new_params_passes() -> None:
    log = _scheduled_log(T0 + timedelta(seconds=2), "updated-0")
    notes = [Note("param", "f", "first", 1, "tag=updated-0,n=3")]
    started = [(T0 + timedelta(seconds=4)).timestamp()]
    assert scheduled_problems(log, notes, started, update_for(0)) == []


def test_the_checker_sees_an_updated_flow_started_early_or_with_old_params() -> None:
    log = _scheduled_log(T0 + timedelta(seconds=5), "updated-0")
    notes = [Note("param", "f", "first", 1, "tag=submitted,n=1")]
    started = [(T0 + timedelta(seconds=4)).timestamp()]
    problems = scheduled_problems(log, notes, started, {"tag": "updated-7", "n": 3})
    assert problems == [
        "flow f: the update set tag=updated-7, the log's spec has {'tag': 'updated-0', 'n': 3}",
        "flow f: task first was handed out at 2026-12-01T12:00:03+00:00, before its start "
        "2026-12-01T12:00:05+00:00",
        f"flow f: a task started at {started[0]:.3f}, 1.000s before the flow's start",
        "flow f: task first attempt 1 got params tag=submitted,n=1, not tag=updated-0,n=3",
    ]
