"""The benchmark harness's own helpers on tiny fake inputs: no servers, well under 2 s."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.__main__ import parse_args
from bench.stats import (
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
    scale_run["rss_peak_mib"] = {"scheduler": 120.0, "runner": 40.0}
    small = {**scale_run, "total_s": 0.2, "planning_s": 0.02}
    peer: dict[str, Any] = {"jobs": 20.0, "steady_per_s": 1000.0, "enqueue_drain_per_s": 800.0}
    peer["enqueue_to_start_ms"] = {"p50": 2.0}
    reps: list[dict[str, Any]] = [
        {
            "throughput": {"noop": {"single_task_flows": flows}},
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


def test_targets_readme_and_result_file(tmp_path: Path) -> None:
    results = _fake_results()
    verdicts = {t["name"]: t["verdict"] for t in report.targets(results)}
    assert verdicts == {
        "noop throughput >= faster peer's steady jobs/s": "miss",
        "step-to-step p50 <= 5 ms": "miss",
        "submit->start p50 <= 10 ms": "hit",
        "10,000-task flow planning < 0.5 s": "hit",
        "scheduler peak RSS < 300 MiB": "hit",
    }
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
    assert json.loads(path.read_text())["targets"][2]["verdict"] == "hit"
    text = report.readme(doc, path, None)
    assert "./just bench --quick" in text and "| fan 10,000 |" in text
    assert "**miss**" in text


def test_options_quick_and_defaults() -> None:
    quick = parse_args(["--quick", "--only", "latency"])
    assert quick.repeats == 1 and quick.flows < 20_000 and quick.only == ["latency"]
    assert quick.readme is False
    full = parse_args([])
    assert full.repeats == 3 and full.flows == 20_000 and full.wide == 10_000
    assert full.fan_sizes == [1000, 5000, 10_000] and full.readme is True
