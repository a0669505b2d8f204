"""A fake cluster (kmock API emulator + test kubelet) and weir running on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from weir.client import Client
from weir.config import Settings
from weir.embedded import free_port
from weir_runner.executors.kubernetes import KubernetesConfig, KubernetesExecutor

from tests.conftest import Services
from tests.kubernetes.cluster import ApiServerProcess, FakeApiServer, TestKubelet, write_kubeconfig

NAMESPACE = "weir-test"
POD_RESYNC = 2.0
"""Short, so a watch event the emulator loses delays a test by seconds, not for good."""
ORPHAN_SWEEP = 0.5


@pytest.fixture
async def apiserver() -> AsyncIterator[ApiServerProcess]:
    async with FakeApiServer() as handler:
        process = ApiServerProcess(handler, free_port())
        await process.start()
        try:
            yield process
        finally:
            await process.stop()


@pytest.fixture
async def kubelet(apiserver: ApiServerProcess, tmp_path: Path) -> AsyncIterator[TestKubelet]:
    workdir = tmp_path / "kubelet"
    workdir.mkdir()
    async with TestKubelet(apiserver, workdir) as running:
        yield running


@pytest.fixture
def kubeconfig(apiserver: ApiServerProcess, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", apiserver.url, NAMESPACE)


@pytest.fixture
def kube_settings(settings: Settings, kubeconfig: Path) -> Settings:
    return replace(
        settings,
        executor="kubernetes",
        kube_namespace=NAMESPACE,
        kube_config=str(kubeconfig),
        kube_image_pull_timeout=1.0,
        kube_unschedulable_timeout=1.0,
        dispatch_ack_wait=2.0,
        kube_allowed_secrets=("db",),  # read directly (`fromSecret: db/password`) by tests
        kube_allowed_node_selectors=("gpu",),
    )


@pytest.fixture
async def executor(
    kube_settings: Settings, kubelet: TestKubelet
) -> AsyncIterator[KubernetesExecutor]:
    config = replace(
        KubernetesConfig.from_settings(kube_settings),
        pod_resync=POD_RESYNC,
        orphan_sweep=ORPHAN_SWEEP,
    )
    running = KubernetesExecutor(config)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def kube_services(
    kube_settings: Settings, executor: KubernetesExecutor
) -> AsyncIterator[Services]:
    running = await Services.start(kube_settings, executor)
    yield running
    await running.stop()


@pytest.fixture
async def kube_client(kube_services: Services) -> AsyncIterator[Client]:
    async with await Client.connect(kube_services.settings.nats_url) as connected:
        yield connected
