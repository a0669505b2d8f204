"""The design's floor (`bench/skeleton.py`) moves weir's messages and appends per flow, on a
real Postgres and a real nats-server: a floor that skipped some would not bound weir."""

from __future__ import annotations

from pathlib import Path

import pytest
from weir.embedded import EmbeddedPostgres

from bench import report, skeleton
from bench.stats import combine_repeats
from bench.weirstack import Cluster

PROCESSES = {"scheduler", "runner", "nats", "postgres"}


@pytest.mark.parametrize("lean_pull", [False, True], ids=["fetch_batch", "lean pull"])
def test_single_task_flows_carry_weirs_five_events_each_and_leave_no_work(
    postgres: EmbeddedPostgres, tmp_path: Path, lean_pull: bool
) -> None:
    result = skeleton.run(Cluster(tmp_path, postgres), tmp_path, flows=40, lean_pull=lean_pull)
    assert result["tasks_per_s"] > 0 and set(result["cpu_ms_per_task"]) == PROCESSES
    # flow_submitted, task_dispatched, task_started, task_succeeded, flow_succeeded
    assert result["event_messages"] == result["event_rows"] == 5 * 40
    assert result["work_left"] == 0  # every submit, dispatch and report taken and acknowledged


def test_a_wide_flow_carries_three_events_per_task_and_grouping_cuts_the_messages(
    postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    fan = skeleton.run(Cluster(tmp_path, postgres), tmp_path, flows=1, tasks=30)
    assert fan["event_rows"] == fan["event_messages"] == 1 + 3 * 30
    grouped = skeleton.run(Cluster(tmp_path, postgres), tmp_path, flows=1, tasks=30, grouped=True)
    assert grouped["event_rows"] == 1 + 3 * 30  # the same log, in fewer messages
    # one message per append: the submit's, then one per report batch (none dropped as a
    # duplicate: each carries its first event's id)
    assert 2 <= grouped["event_messages"] <= 1 + 30
    assert grouped["event_messages"] < grouped["event_rows"]
    assert grouped["work_left"] == 0


def test_the_idle_floor_times_each_submit_and_each_step_of_a_chain_with_weirs_events(
    postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    result = skeleton.latency(Cluster(tmp_path, postgres), tmp_path, samples=5, chain_len=12)
    start, step = result["submit_to_start_ms"], result["step_to_step_ms"]
    assert start["n"] == 5 and step["n"] == 11  # every submit, every step between 12 tasks
    assert 0 < start["p50"] <= start["max"] and 0 < step["p50"] <= step["max"]
    # five events per single-task flow; the chain's submitted, three per task, succeeded
    assert result["event_messages"] == result["event_rows"] == 5 * 5 + 1 + 3 * 12 + 1
    assert result["work_left"] == 0


def test_the_floor_is_reported_beside_the_goals_never_judged() -> None:
    floor = {
        "single_task_flows": {
            "flows": 1000,
            "tasks_per_s": 2000.0,
            "cpu_ms_per_task": {"scheduler": 0.3, "runner": 0.15, "nats": 0.25, "postgres": 0.05},
        },
        "single_task_flows_lean_pull": {
            "flows": 1000,
            "tasks_per_s": 3000.0,
            "cpu_ms_per_task": {"scheduler": 0.2, "runner": 0.1, "nats": 0.2, "postgres": 0.05},
        },
        "fan": {
            "flows": 1,
            "tasks_per_flow": 10_000,
            "tasks_per_s": 2500.0,
            "cpu_ms_per_task": {"scheduler": 0.2, "runner": 0.2, "nats": 0.2, "postgres": 0.02},
        },
        "latency": {
            "submit_to_start_ms": {"n": 100.0, "p50": 3.0, "p99": 6.0},
            "step_to_step_ms": {"n": 199.0, "p50": 2.4, "p99": 12.0},
            "chain_tasks": 200,
        },
    }
    peer = {"steady_per_s": 4000.0, "enqueue_to_start_ms": {"p50": 4.0}}
    results = {
        name: combine_repeats([run])
        for name, run in (("skeleton", floor), ("peers", {"pgqueuer": peer}))
    }
    goals = {t["name"]: t for t in report.targets(results)}
    named = "the design's floor (bench/skeleton.py, no weir logic, {}): single-task flows/s"
    single = goals[named.format("as weir pulls")]
    assert single["ratio"] == 0.5 and single["verdict"] == "reported"
    assert goals[named.format("lean pull")]["ratio"] == 0.75
    fan = goals["the design's floor (as weir pulls): one 10,000-task fan-out, tasks/s"]
    assert fan["ratio"] == 0.5 and fan["verdict"] == "reported"
    lean_fan = goals["the design's floor (lean pull): one 10,000-task fan-out, tasks/s"]
    assert lean_fan["verdict"] == "not measured"  # this run had none
    start = goals[
        "the design's floor (bench/skeleton.py, no weir logic, idle): submit -> started p50"
    ]
    assert start["ratio"] == 0.75 and start["verdict"] == "reported"  # 3.0 ms against 4.0
    step_p50 = goals["the design's floor (idle): step to step p50"]
    assert step_p50["ratio"] == 0.8 and step_p50["verdict"] == "reported"  # under 3 ms
    step_p99 = goals["the design's floor (idle): step to step p99"]
    assert step_p99["ratio"] == 1.2 and step_p99["verdict"] == "reported"  # over 10 ms
    assert report.analyse(results)["lean_floor_vs_peer"] == {"pgqueuer": 0.75}
    table = report.tables({"results": results, "targets": report.targets(results)})
    assert (
        "single-task flows, taken as weir pulls | 2,000 | 0.300, 0.150, 0.250, 0.050 | 0.750 |"
        in table
    )
    assert "single-task flows, lean pull | 3,000 | 0.200, 0.100, 0.200, 0.050 | 0.550 |" in table
    assert (
        "tasks of one flow, taken as weir pulls | 2,500 | 0.200, 0.200, 0.200, 0.020 | 0.620 |"
        in table
    )
    assert (
        "| 100 single-task flows one at a time: submit -> the runner took the dispatch "
        "| 3.00 | 6.00 |" in table
    )
    assert (
        "| a 200-task chain: a task's report sent -> the runner took the next | 2.40 | 12.00 |"
        in (table)
    )
