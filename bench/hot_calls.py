"""CPU microseconds per call of the per-message steps of a single-task flow's hot path.

    .venv/bin/python -m bench.hot_calls [--code REV] [--calls 20000] [--rounds 5]

No services: each step is called in a loop in this process, as the scheduler and the
runner call it once per message, and the best of `--rounds` is printed (a shared box only
ever adds time). `--code REV` measures an exported revision, for an A/B beside the bench's
`cpu_ms_per_task`, whose run-to-run spread hides changes of a few percent.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FLOW = "01jd0hot0path0flow0000000a"
SUBMIT = (
    b'{"id":"' + FLOW.encode() + b'","name":"bench","tasks":[{"name":"t","image":"busybox",'
    b'"cmd":["true"]}]}'
)


def _per_call(step: Callable[[], object], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            step()
        best = min(best, time.process_time() - started)
    return best / calls * 1e6


def steps() -> dict[str, Callable[[], object]]:
    """Each step as the code now imported (the tree or `--code`) calls it."""
    telemetry: Any = importlib.import_module("weir.telemetry")
    subjects: Any = importlib.import_module("weir_proto.subjects")
    reading: Any = importlib.import_module("weir_scheduler.planner.reading")
    decider: Any = importlib.import_module("weir_scheduler.decider")
    copying: Any = importlib.import_module("weir_scheduler.decider.copying")
    flow = decider.FoldedFlow(id=FLOW)
    attempt = telemetry.attempt_context(FLOW, "t", 1)
    carried = {"Nats-Msg-Id": f"{FLOW}.2", "traceparent": telemetry.flow_traceparent(FLOW)}
    dispatch_subject = subjects.dispatch("default", FLOW)

    def runner_receives_a_dispatch() -> None:
        with telemetry.receiving(
            dispatch_subject,
            carried,
            message_id=f"{FLOW}-t-1",
            fallback=attempt,
            attributes={"weir.flow_id": FLOW, "weir.task": "t", "weir.attempt": 1},
        ):
            pass

    def runner_publishes_a_report() -> None:
        with telemetry.publishing(
            subjects.status(FLOW), message_id=f"{FLOW}-t-1:finished", parent=attempt, size=200
        ):
            pass

    def scheduler_receives_a_submit() -> None:
        with telemetry.receiving(subjects.SUBMIT, carried, size=len(SUBMIT)):
            pass

    def relay_headers_of_a_flows_six_rows() -> None:
        for _ in range(6):
            telemetry.flow_traceparent(FLOW)

    return {
        "runner: receive a dispatch (span)": runner_receives_a_dispatch,
        "runner: publish a status report (span)": runner_publishes_a_report,
        "scheduler: receive a submit (span)": scheduler_receives_a_submit,
        "scheduler: relay traceparent, 6 rows of one flow": relay_headers_of_a_flows_six_rows,
        "scheduler: decode a single-task submit": lambda: reading.decode(SUBMIT),
        "scheduler: copy a flow's state (evolve, one copy)": lambda: copying.replace(
            flow, seq=3, status=flow.status
        ),
    }


async def _keep_alive_per_attempt(calls: int, rounds: int) -> float | None:
    """A runner's keep-alive set up and cancelled around an attempt that ends at once."""
    worker: Any = importlib.import_module("weir_runner.worker")
    if not hasattr(worker, "_KeepAlive"):
        return None  # before it: a task per attempt, measured by `_task_per_attempt`
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            keep = worker._KeepAlive(None, 30.0)
            await asyncio.sleep(0)
            keep.cancel()
        best = min(best, time.process_time() - started)
    return best / calls * 1e6


async def _task_per_attempt(calls: int, rounds: int) -> float:
    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(30.0)

    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            task = asyncio.create_task(keep_alive())
            await asyncio.sleep(0)
            task.cancel()
        await asyncio.sleep(0)
        best = min(best, time.process_time() - started)
    return best / calls * 1e6


def measure(calls: int, rounds: int) -> None:
    """Print each step's figure, for the code this process imports."""
    for name, step in steps().items():
        step()  # warm caches and imports
        print(f"  {name}: {_per_call(step, calls, rounds):.2f} us", flush=True)
    keep = asyncio.run(_keep_alive_per_attempt(calls, rounds))
    if keep is None:
        keep = asyncio.run(_task_per_attempt(calls, rounds))
    print(f"  runner: keep-alive per attempt: {keep:.2f} us", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_calls", description=__doc__)
    parser.add_argument("--code", default="tree", help="'tree' or a git revision")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.here:
        measure(args.calls, args.rounds)
        return
    # The bench's own modules import weir's; a fresh process (PYTHONPATH set by `use_code`)
    # imports the revision measured.
    from bench.__main__ import HERE, use_code

    with tempfile.TemporaryDirectory(prefix="weir-hot-calls-") as workdir:
        print(f"measuring {use_code(args.code, Path(workdir) / 'code')}", flush=True)
        here = ["--here", "--calls", str(args.calls), "--rounds", str(args.rounds)]
        command = [sys.executable, "-m", "bench.hot_calls", *here]
        subprocess.run(command, cwd=HERE.parent, check=True)


if __name__ == "__main__":
    main()
