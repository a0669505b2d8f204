"""What a runner's memory of a flow's cancel ends: the attempts dispatched before it, by the
flow log's order (the events' `seq`), never one a retry dispatched after it, and never
undone by an older cancel published again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from weir.config import Settings
from weir_proto.messages import Dispatch
from weir_proto.spec import TaskSpec
from weir_runner.executors.noop import NoopExecutor
from weir_runner.worker import Runner

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _runner(tmp_path: Path) -> Runner:
    return Runner(Settings(runner_dir=str(tmp_path)), NoopExecutor())


def _dispatch(seq: int, at: datetime = T0, attempt: int = 1) -> Dispatch:
    return Dispatch(
        flow_id="f-1",
        attempt=attempt,
        attempt_id=f"f-1-load-{attempt}",
        task=TaskSpec(name="load", cmd=["true"]),
        dispatched_at=at,
        token="t",
        seq=seq,
    )


def test_a_cancel_drops_dispatches_made_before_it_and_runs_a_retrys(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    runner._cancel_flow("f-1", "cancelled", at=T0, seq=10)
    assert runner._cancelled(_dispatch(seq=4), on_exit=False)
    # a retry's dispatch comes later in the log, whatever the clocks of two schedulers say
    assert not runner._cancelled(_dispatch(seq=12, at=T0 - timedelta(seconds=5)), False)


def test_without_seqs_the_schedulers_clock_decides(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    runner._cancel_flow("f-1", "cancelled", at=T0)  # an event from a scheduler without seq
    assert runner._cancelled(_dispatch(seq=0, at=T0 - timedelta(seconds=1)), False)
    assert not runner._cancelled(_dispatch(seq=0, at=T0 + timedelta(seconds=1)), False)


def test_an_older_cancel_published_again_changes_nothing(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    runner._cancel_flow("f-1", "fail_fast", spares_on_exit=True, at=T0, seq=10)
    runner._cancel_flow("f-1", "by user", at=T0 + timedelta(minutes=1), seq=20)
    runner._cancel_flow("f-1", "fail_fast", spares_on_exit=True, at=T0, seq=10)  # again
    seen = runner.recently_cancelled["f-1"]
    assert (seen.seq, seen.spares_on_exit) == (20, False)
    assert not runner._cancelled(_dispatch(seq=25), False)


async def test_a_cancel_kills_running_attempts_dispatched_before_it_only(tmp_path: Path) -> None:
    runner = _runner(tmp_path)

    async def running() -> None:
        await asyncio.sleep(60)

    before, after = asyncio.create_task(running()), asyncio.create_task(running())
    for key, task, seq in ((("f-1", "a", 1), before, 3), (("f-1", "b", 2), after, 12)):
        runner.attempts[key] = task
        runner.dispatches[key] = _dispatch(seq)
    runner._cancel_flow("f-1", "cancelled", at=T0, seq=10)
    await asyncio.sleep(0)
    assert before.cancelled() and runner.cancelled == {("f-1", "a", 1): "cancelled"}
    assert not after.done(), "a retry's attempt, dispatched after the cancel, was killed"
    after.cancel()
