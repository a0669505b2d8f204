"""NoopExecutor: reports every attempt started and succeeded without running anything.

For dry runs of a flow's shape and for measuring orchestration cost alone (`./just bench`).
"""

from __future__ import annotations

from weir_proto.messages import Dispatch

from weir_runner.executors.base import AttemptResult, Executor, OnStarted


class NoopExecutor(Executor):
    name = "noop"
    writes_logs = False

    async def run(self, dispatch: Dispatch, on_started: OnStarted) -> AttemptResult:
        await on_started()
        return AttemptResult(0)
