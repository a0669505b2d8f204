"""The executor alone on the fake cluster: idempotent create, adoption, cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from weir_proto.messages import Dispatch, ErrorType
from weir_runner.executors.kubernetes import KubernetesExecutor
from weir_runner.executors.kubernetes import executor as executor_module
from weir_runner.executors.kubernetes.manifest import pod_manifest

from tests.flows import dispatch_of
from tests.kubernetes.cluster import ApiServerProcess, TestKubelet
from tests.kubernetes.conftest import NAMESPACE

WAIT = 20.0


def dispatch(flow_id: str, name: str, *cmd: str, **extra: Any) -> Dispatch:
    fields = {"name": name, "cmd": list(cmd), "image": "debian:bookworm-slim", **extra}
    return dispatch_of(fields, flow_id)


class StartedCount:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


async def test_cancelling_run_deletes_the_pod_and_stops_its_process(
    executor: KubernetesExecutor, kubelet: TestKubelet, apiserver: ApiServerProcess
) -> None:
    work = dispatch("cancel-1", "long", "sleep", "30")
    run = asyncio.create_task(executor.run(work, StartedCount()))
    await asyncio.wait_for(kubelet.started_event(work.attempt_id).wait(), WAIT)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)

    assert run.cancelled()
    assert apiserver.handler.pod(NAMESPACE, work.attempt_id) is None
    process = kubelet.processes[(NAMESPACE, work.attempt_id)]
    await asyncio.wait_for(process.wait(), WAIT)  # the kubelet killed it on the deletion


async def test_existing_finished_pod_is_adopted_and_its_result_reported(
    executor: KubernetesExecutor, kubelet: TestKubelet, apiserver: ApiServerProcess
) -> None:
    work = dispatch("adopt-1", "done", "true")
    pod = pod_manifest(work, NAMESPACE)
    pod["status"] = {  # finished before this runner (re)started
        "phase": "Failed",
        "containerStatuses": [
            {"name": "task", "state": {"terminated": {"exitCode": 4, "reason": "Error"}}}
        ],
    }
    async with apiserver.handler.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod) as resp:
        assert resp.status == 200
    started = StartedCount()

    result = await asyncio.wait_for(executor.run(work, started), WAIT)

    assert (result.exit_code, result.error_type) == (4, ErrorType.EXIT_CODE)
    assert 'task "done" exited with code 4' in result.message
    assert started.calls == 1  # it ran, though nobody saw it running
    assert kubelet.runs[work.attempt_id] == 0
    assert apiserver.handler.pod(NAMESPACE, work.attempt_id) is None


async def test_running_the_same_attempt_twice_creates_one_pod(
    executor: KubernetesExecutor, kubelet: TestKubelet
) -> None:
    work = dispatch("twice-1", "once", "sh", "-c", "sleep 0.3; echo ran")
    first, second = await asyncio.wait_for(
        asyncio.gather(executor.run(work, StartedCount()), executor.run(work, StartedCount())),
        WAIT,
    )

    assert first.succeeded and second.succeeded
    assert kubelet.runs[work.attempt_id] == 1


async def test_finished_attempt_reports_its_recorded_result_without_a_pod(
    executor: KubernetesExecutor, kubelet: TestKubelet
) -> None:
    work = dispatch("again-1", "fails", "sh", "-c", "exit 7")
    first = await asyncio.wait_for(executor.run(work, StartedCount()), WAIT)
    second = await asyncio.wait_for(executor.run(work, StartedCount()), WAIT)

    assert first == second
    assert first.exit_code == 7
    assert kubelet.runs[work.attempt_id] == 1


async def test_large_log_keeps_its_start_and_its_end_with_a_truncation_marker(
    executor: KubernetesExecutor, kubelet: TestKubelet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_module, "LOG_LIVE_LIMIT_BYTES", 500_000)
    monkeypatch.setattr(executor_module, "LOG_LIMIT_BYTES", 200_000)
    script = "head -c 1500000 /dev/zero | tr '\\0' x; echo; echo the-end; exit 1"
    work = dispatch("biglog-1", "chatty", "sh", "-c", script)
    result = await asyncio.wait_for(executor.run(work, StartedCount()), WAIT)

    log = (executor.attempt_dir(work.attempt_id) / "stdout.log").read_bytes()
    total = 1_500_000 + len(b"\nthe-end\n")
    marker = f"\n[weir: log truncated, {total - 700_000} bytes dropped]\n".encode()
    assert log == b"x" * 500_000 + marker + (b"x" * 1_500_000 + b"\nthe-end\n")[-200_000:]
    assert result.message.endswith("the-end")
