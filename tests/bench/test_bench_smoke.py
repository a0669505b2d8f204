"""The benchmark harness's own helpers on tiny fake inputs: no servers, well under 2 s."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.__main__ import parse_args
from bench.scenarios import rss_growth
from bench.stats import (
    Goal,
    combine_repeats,
    dig,
    growth_exponent,
    latency_summary,
    linearity_verdict,
    percentile,
    spread,
    write_results,
)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    summary = latency_summary([1.0, 2.0, 3.0, 4.0])
    assert summary["n"] == 4 and summary["p50"] == pytest.approx(2.5)
    assert latency_summary([]) == {"n": 0.0}


def test_repeats_fold_into_median_and_spread() -> None:
    reps: list[dict[str, Any]] = [
        {"tps": 100.0, "nested": {"p50": 4.0}, "label": "a", "ok": True},
        {"tps": 120.0, "nested": {"p50": 6.0}, "label": "b", "ok": False},
        {"tps": 90.0, "nested": {"p50": 5.0}, "label": "c", "ok": True},
    ]
    combined = combine_repeats(reps)
    assert combined["tps"]["median"] == 100.0
    assert combined["tps"]["min"] == 90.0 and combined["tps"]["max"] == 120.0
    assert combined["tps"]["spread_pct"] == 30.0
    assert dig(combined, "nested", "p50") == 5.0
    assert combined["label"] == "a" and combined["ok"] is True
    assert spread([3.0]).spread_pct == 0.0


def test_growth_exponent_tells_linear_from_quadratic() -> None:
    sizes = [1000.0, 5000.0, 10000.0]
    linear = growth_exponent(sizes, [s * 0.002 for s in sizes])
    quadratic = growth_exponent(sizes, [s * s * 1e-6 for s in sizes])
    assert linear is not None and math.isclose(linear, 1.0, abs_tol=1e-9)
    assert quadratic is not None and math.isclose(quadratic, 2.0, abs_tol=1e-9)
    assert linearity_verdict(linear) == "linear"
    assert linearity_verdict(quadratic) == "quadratic or worse"
    assert growth_exponent([1.0], [1.0]) is None


def _fake_results() -> dict[str, Any]:
    flows: dict[str, Any] = {
        "tasks": 20.0,
        "tasks_per_s": 900.0,
        "elapsed_s": 1.0,
        "submits_per_s": 5.0,
    }
    flows["rss_peak_mib"] = {"scheduler": 80.0, "runner": 40.0}
    scale_run: dict[str, Any] = {
        "planning_s": 0.2,
        "total_s": 2.0,
        "per_task_ms": 0.2,
        "event_rows_per_task": 3.0,
    }
    scale_run["event_bytes_per_task"] = 1500.0
    scale_run["tasks"] = 10000.0
    scale_run["rss_peak_mib"] = {"scheduler": 120.0, "runner": 40.0}
    small = {**scale_run, "total_s": 0.2, "planning_s": 0.02}
    peer: dict[str, Any] = {"jobs": 20.0, "steady_per_s": 1000.0, "enqueue_drain_per_s": 800.0}
    peer["enqueue_to_start_ms"] = {"p50": 2.0}
    batched = {**flows, "tasks_per_s": 1200.0}
    x1 = {**flows, "tasks_per_s": 1000.0}
    x2 = {**flows, "tasks_per_s": 1400.0, "flows": 20.0}
    soak: dict[str, Any] = {"seconds": 60.0, "rate_per_s": 200.0, "flows": 12000.0}
    soak["event_bytes_per_task"] = 1400.0
    soak["rss"] = {
        "scheduler": {"start_mib": 80.0, "end_mib": 84.0},
        "runner": {"start_mib": 40.0, "end_mib": 48.0},
    }
    reps: list[dict[str, Any]] = [
        {
            "throughput": {
                "noop": {"single_task_flows": flows, "single_task_flows_batched": batched}
            },
            "replicas": {"x1": x1, "x2": x2, "cpu_count": 2.0},
            "soak": soak,
            "latency": {
                "submit_to_start_ms": {"p50": 5.0, "p95": 9.0, "p99": 12.0},
                "step_to_step_ms": {"p50": 6.0, "p95": 8.0, "p99": 9.0},
                "submit_ack_ms": {"p50": 0.5, "p95": 1.0, "p99": 1.0},
                "chain_tasks": 200,
            },
            "scale": {"fan_1000": small, "fan_10000": scale_run},
            "peers": {"pgqueuer": peer},
        }
    ]
    return {name: combine_repeats([r[name] for r in reps]) for name in reps[0]}


def test_goals_are_ratios_against_the_peer_or_target_with_verdicts(tmp_path: Path) -> None:
    results = _fake_results()
    goals = {t["name"]: t for t in report.targets(results)}
    flows = goals["single-task flows/s, one submit per flow"]
    assert flows["ratio"] == 0.9 and flows["goal"] == 1.0 and flows["verdict"] == "miss"
    assert flows["against"] == "pgqueuer steady jobs/s" and flows["reference"] == 1000.0
    batched = goals["single-task flows/s, submitted in batches (submit_many)"]
    assert batched["ratio"] == 1.2 and batched["verdict"] == "hit"
    fan = goals["one 10,000-task fan-out drains, tasks/s"]
    assert fan["ratio"] == 1.0 and fan["verdict"] == "hit"  # 10,000 tasks in 2 s
    start = goals["submit -> started p50"]
    assert start["ratio"] == 2.5 and start["verdict"] == "miss"  # 5 ms against 2 ms
    assert goals["step to step p50"]["verdict"] == "miss"  # 6 ms against 3 ms
    assert goals["step to step p99"]["verdict"] == "hit"  # 9 ms against 10 ms
    assert goals["2 schedulers + 2 runners, flows/s (2 CPUs)"]["ratio"] == 1.4
    assert goals["2 schedulers + 2 runners, flows/s (2 CPUs)"]["verdict"] == "miss"
    assert goals["scheduler RSS at the end of a 60 s steady run"]["verdict"] == "hit"
    assert goals["runner RSS at the end of a 60 s steady run"]["verdict"] == "miss"
    assert goals["event log bytes per task"]["verdict"] == "reported"
    assert goals["one 10,000-task chain, ms per step"]["verdict"] == "not measured"
    assert goals["10,000-task flow planning (standing goal)"]["verdict"] == "hit"
    assert goals["scheduler peak RSS, any scenario (standing goal)"]["verdict"] == "hit"

    analysis = report.analyse(results)
    assert analysis["scale_growth"]["fan"]["total_s_verdict"] == "linear"
    assert analysis["weir_vs_peers"]["pgqueuer"]["weir_noop_tasks_per_s_over_steady"] == 0.9
    doc: dict[str, Any] = {
        "stamp": "20260101T000000Z",
        "command": "./just bench --quick",
        "machine": {"cpu_count": 2, "python": "3.11"},
        "notes": report.NOTES,
        "results": results,
        "analysis": analysis,
        "targets": report.targets(results),
    }
    path = write_results(tmp_path / "results", doc["stamp"], doc)
    assert json.loads(path.read_text())["targets"][1]["verdict"] == "hit"
    text = report.readme(doc, path, None)
    assert "./just bench --quick" in text and "| fan 10,000 |" in text
    assert (
        "| single-task flows/s, one submit per flow | 900.00 flows/s "
        "| pgqueuer steady jobs/s: 1,000 | 0.900 | >= 1.00 | **miss** |"
    ) in text
    assert "| 2 schedulers + 2 runners | 20 | 1,400 |" in text
    assert "| runner | 40.0 | 48.0 |" in text


def test_a_goal_without_its_figure_is_not_measured_never_hit() -> None:
    missing = Goal("x", None, "ms", "target", 3.0, 1.0, higher_is_better=False)
    no_peer = Goal("y", 5.0, "flows/s", "pgqueuer", None, 1.0)
    assert missing.verdict == "not measured" and no_peer.verdict == "not measured"
    assert Goal("z", 3.0, "ms", "target", 3.0, 1.0, higher_is_better=False).verdict == "hit"
    assert report.targets({})[0]["verdict"] == "not measured"


def test_rss_growth_tells_flat_from_growing() -> None:
    flat = [(float(t), 100 * 2**20 + (t % 3) * 2**16) for t in range(100)]
    growing = [(float(t), (100 + t) * 2**20) for t in range(100)]
    assert rss_growth(flat)["end_over_start"] == pytest.approx(1.0, abs=0.01)
    grown = rss_growth(growing)
    assert grown["end_over_start"] > 1.3 and grown["slope_mib_per_min"] == pytest.approx(60.0)
    assert rss_growth(flat[:5]) == {}


def test_options_quick_and_defaults() -> None:
    quick = parse_args(["--quick", "--only", "latency"])
    assert quick.repeats == 1 and quick.flows < 20_000 and quick.only == ["latency"]
    assert quick.readme is False
    full = parse_args([])
    assert full.repeats == 3 and full.flows == 20_000 and full.wide == 10_000
    assert full.fan_sizes == [1000, 5000, 10_000] and full.readme is True
