"""The kubernetes executor's background loops (pod watch, secret sync, orphan sweep) run
under the runner's supervisor: one that fails is reported and restarted, and pods still run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from weir.client import Client
from weir.config import Settings
from weir.health import probe
from weir_runner.executors.kubernetes import KubernetesExecutor
from weir_runner.executors.kubernetes.secret_sync import SecretSync
from weir_runner.executors.kubernetes.watcher import PodWatcher

from tests.conftest import Services
from tests.kubernetes.test_flows import pod_task, run_flow
from tests.waiting import until

WAIT = 30.0

ROUNDS: dict[str, tuple[object, str]] = {
    "pod-watch": (PodWatcher, "run_once"),
    "secret-sync": (SecretSync, "run_once"),
    "orphan-sweep": (KubernetesExecutor, "_sweep_orphans"),
}


async def restarted(loop: str, executor: KubernetesExecutor) -> None:
    """Until the restarted loop has visibly done its work again."""
    if loop == "pod-watch":
        assert executor.watcher is not None
        await executor.watcher.synced.wait()  # listed pods again
    elif loop == "secret-sync":
        sync = executor.secret_sync
        assert sync is not None  # no event for it: reconciles is its signal
        await until(lambda: sync.reconciles >= 1, "the restarted secret sync reconciled")
    else:
        await executor.loops.signals.succeeded.wait(loop)


@pytest.mark.parametrize("loop", list(ROUNDS))
async def test_executor_loop_that_fails_is_reported_restarted_and_pods_still_run(
    loop: str,
    kube_settings: Settings,
    executor: KubernetesExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner, attribute = ROUNDS[loop]
    real: Callable[..., Awaitable[Any]] = getattr(owner, attribute)
    release = asyncio.Event()

    async def failing_until_released(*args: Any) -> Any:
        if not release.is_set():
            raise RuntimeError(f"injected fault in {loop}")
        return await real(*args)

    monkeypatch.setattr(owner, attribute, failing_until_released)
    services = await Services.start(kube_settings, executor)
    loops = services.runner.loops
    try:
        assert executor.loops is loops
        await asyncio.wait_for(loops.signals.failed.wait(loop), WAIT)
        async with await Client.connect(kube_settings.nats_url) as client:
            health = await probe(client.nc, "runner", kube_settings.runner_name)
            assert (health["status"], health["ready"]) == ("degraded", False)
            state = health["loops"][loop]
            assert (
                state["ok"] is False and state["error"] == f"RuntimeError: injected fault in {loop}"
            )

            release.set()
            await asyncio.wait_for(restarted(loop, executor), WAIT)
            view = await run_flow(client, {"name": "after", "tasks": [pod_task("a", "true")]})
            assert view.status == "succeeded"
        assert loops.running(loop) and not loops.fatal.is_set()
    finally:
        await services.stop()
