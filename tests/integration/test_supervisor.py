"""Background loops on the real services: a loop that fails is restarted, and the work it
does (retries, timers) still happens afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from weir.client import Client
from weir_scheduler.store import ConcurrencyError
from weir_scheduler.timers import TimerFirer

from tests.conftest import Services
from tests.flows import task, types

QUICK_RETRY = {"max_attempts": 3, "backoff": {"strategy": "constant", "base": 0.1, "jitter": None}}
FLOW_WAIT = 30.0


async def test_timer_loop_survives_a_concurrency_error_and_the_retry_still_fires(
    settings: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fire_due = TimerFirer.fire_due
    raised = asyncio.Event()

    async def fire_due_once_failing(self: TimerFirer) -> int:
        if not raised.is_set():
            raised.set()
            raise ConcurrencyError("injected: another writer appended first")
        return await real_fire_due(self)

    monkeypatch.setattr(TimerFirer, "fire_due", fire_due_once_failing)
    services = await Services.start(settings)  # type: ignore[arg-type]
    try:
        async with await Client.connect(services.settings.nats_url) as client:
            await asyncio.wait_for(raised.wait(), FLOW_WAIT)
            count = tmp_path / "count"
            script = f"n=$(cat {count} 2>/dev/null || echo 0); echo 1 > {count}; [ $n = 1 ]"
            flow_id = await client.submit(
                {"name": "flaky", "tasks": [task("flaky", "sh", "-c", script, retry=QUICK_RETRY)]}
            )
            await asyncio.wait_for(client.wait(flow_id), FLOW_WAIT)
            events = [e async for e in client.events(flow_id)]
            assert types(events).count("task_attempt_failed") == 1
            assert types(events)[-1] == "flow_succeeded"
    finally:
        await services.stop()
