"""Prove nothing is lost: flows run to their end through kill -9 of schedulers and runners and
restarts of nats-server and Postgres, while some are paused and resumed, some have a task
retried (`weir retry`), some map a task over a list, some take params, gate tasks with
trigger rules and `when` conditions and end with an on_exit task, and some are moved to a new
start with new params (`weir update`), with every event once in the log and
in the stream, every step answered as made in the log, no finished task run again, no two
executions of one task at once, and every flow and task ended as its spec implies.

The short run is part of `./just test`; `./just chaos` runs the long one with a memory soak.
`WEIR_CHAOS_SEED` replays a run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.driver import Plan, flat_memory, run_chaos, seed_from_env

SHORT_FLOWS = 40
SHORT_SECONDS = 22.0
LONG_FLOWS = 400
SOAK_SECONDS_DEFAULT = 600.0


def _assert_clean(run_summary: str, violations: list[str]) -> None:
    shown = "\n".join(violations[:30])
    assert not violations, f"{run_summary}\n{len(violations)} violations:\n{shown}"


@pytest.mark.slow
@pytest.mark.timeout(110)
async def test_short_chaos_loses_nothing(tmp_path: Path) -> None:
    plan = Plan(seed=seed_from_env(), flows=SHORT_FLOWS, duration=SHORT_SECONDS, settle_timeout=45)
    run = await run_chaos(tmp_path / "chaos", plan)
    assert run.verdict is not None
    print(run.summary())
    assert sum(run.faults.values()) >= 4, f"too few faults injected: {run.faults}"
    _assert_clean(run.summary(), run.verdict.violations)
    stepped = run.verdict.steps
    steps = ("flow_paused", "flow_resumed", "task_retried", "flow_updated")
    assert min(stepped[e] for e in steps) >= 1, stepped
    assert run.verdict.instances >= 1, "no mapped task ran an instance"
    assert run.verdict.gates >= 1, "no flow with trigger rules, conditions and on_exit ran"
    assert run.verdict.updated >= 1, "no flow was updated before its start"


@pytest.mark.chaos_long
@pytest.mark.timeout(int(SOAK_SECONDS_DEFAULT * 3))
async def test_long_chaos_soak_loses_nothing_and_memory_stays_flat(tmp_path: Path) -> None:
    if not os.environ.get("WEIR_CHAOS_LONG"):
        pytest.skip("the long chaos soak runs with `./just chaos` (WEIR_CHAOS_LONG=1)")
    seconds = float(os.environ.get("WEIR_CHAOS_SOAK_SECONDS", SOAK_SECONDS_DEFAULT))
    flows = int(os.environ.get("WEIR_CHAOS_FLOWS", LONG_FLOWS))
    plan = Plan(
        seed=seed_from_env(),
        flows=flows,
        duration=seconds,
        fault_gap=(3.0, 8.0),
        kill_replicas=(1,),  # replica 0 lives through the soak: its RSS is the memory figure
    )
    run = await run_chaos(tmp_path / "chaos", plan)
    assert run.verdict is not None
    print(run.summary())
    for name, samples in sorted(run.rss.items()):
        print(f"rss {name}: first {samples[0]} KiB, last {samples[-1]} KiB, {len(samples)} samples")
    _assert_clean(run.summary(), run.verdict.violations)
    grew = flat_memory(run.rss)
    assert not grew, "memory grew during the soak:\n" + "\n".join(grew)
