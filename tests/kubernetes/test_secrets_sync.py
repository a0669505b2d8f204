"""Secrets from weir's store reach pods through a Kubernetes Secret weir keeps in sync: the
value is only in that Secret's data, the pod holds a `secretKeyRef`, and a secret found
nowhere fails the task before any pod exists. While the runner runs, the synced Secrets
follow the store: `weir secret rm` deletes one, `weir secret set` updates one, and Secrets
orphaned while no runner watched are deleted when one starts. Secrets weir did not create
are never touched."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from weir.client import Client
from weir.config import Settings
from weir.jetstream import close, connect, ensure_streams
from weir.secrets import SECRET_KEY_ENV, SecretStore, new_secret_key, secret_key_from_env
from weir_runner.executors.kubernetes import KubernetesExecutor
from weir_runner.worker import Runner

from tests.conftest import Services, _start
from tests.kubernetes.cluster import SECRETS, ApiServerProcess
from tests.kubernetes.conftest import NAMESPACE
from tests.kubernetes.test_flows import ONCE, pod_shell, pod_task, run_flow, tasks_of
from tests.waiting import until

VALUE = "tok-3f9a1c7e"
SYNC_WAIT = 30.0
"""Longest a change in the store may take to reach the cluster (API retries back off to 5s)."""


@pytest.fixture
async def store(
    monkeypatch: pytest.MonkeyPatch, kube_services: Services
) -> AsyncIterator[SecretStore]:
    monkeypatch.setenv(SECRET_KEY_ENV, new_secret_key())
    nc = await connect(kube_services.settings.nats_url, "test-secrets")
    try:
        yield SecretStore(nc.jetstream(), secret_key_from_env())
    finally:
        await close(nc)


def stored_secret(apiserver: ApiServerProcess, name: str) -> dict[str, Any] | None:
    try:
        obj = apiserver.handler.objects[SECRETS, NAMESPACE, name]
    except KeyError:
        return None
    return None if obj.deleted else dict(obj.raw)


async def test_stored_secret_is_synced_into_a_secret_the_pod_references(
    kube_client: Client,
    store: SecretStore,
    apiserver: ApiServerProcess,
    kube_settings: Settings,
) -> None:
    await store.set("api-token", VALUE.encode())
    spec = {
        "id": "sync-1",
        "name": "sync",
        "tasks": [
            pod_shell(
                "use",
                'echo "token=$TOKEN"',
                env=[{"name": "TOKEN", "fromSecret": "api-token"}],
                retry=ONCE,
            )
        ],
    }
    view = await run_flow(kube_client, spec)

    assert view.status == "succeeded", view
    log = Path(kube_settings.runner_dir, "sync-1-use-1", "stdout.log").read_text()
    assert f"token={VALUE}" in log
    secret = stored_secret(apiserver, "weir-secret-api-token")
    assert secret is not None
    assert secret["data"] == {"value": base64.b64encode(VALUE.encode()).decode()}
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "weir"
    pod = apiserver.handler.pod_history(NAMESPACE, "sync-1-use-1")[0]
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["TOKEN"] == {
        "name": "TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "weir-secret-api-token", "key": "value"}},
    }
    assert VALUE not in str(pod)
    assert base64.b64encode(VALUE.encode()).decode() not in str(pod)

    # A new value in the store reaches the Secret at the next attempt.
    await store.set("api-token", b"rotated-value")
    view = await run_flow(kube_client, {**spec, "id": "sync-2"})
    assert view.status == "succeeded"
    assert (
        "token=rotated-value"
        in Path(kube_settings.runner_dir, "sync-2-use-1", "stdout.log").read_text()
    )
    secret = stored_secret(apiserver, "weir-secret-api-token")
    assert secret is not None
    assert secret["data"] == {"value": base64.b64encode(b"rotated-value").decode()}


async def test_unknown_secret_fails_before_any_pod_is_created(
    kube_client: Client, store: SecretStore, apiserver: ApiServerProcess
) -> None:
    await store.set("other", b"unrelated")
    spec = {
        "id": "unknown-1",
        "name": "unknown",
        "tasks": [
            pod_task("use", "true", env=[{"name": "PW", "fromSecret": "absent"}], retry=ONCE),
            pod_task(
                "keyed", "true", env=[{"name": "DB", "fromSecret": "db/password"}], retry=ONCE
            ),
        ],
    }
    view = await run_flow(kube_client, spec)

    assert view.status == "failed"
    use, keyed = tasks_of(view)["use"], tasks_of(view)["keyed"]
    assert use.error_type == "secret"
    assert 'task "use": env PW wants secret "absent", which does not exist' in use.error_message
    assert "weir secret set absent" in use.error_message
    assert keyed.error_type == "secret"
    assert 'env DB wants Kubernetes Secret "db" key "password"' in keyed.error_message
    assert apiserver.handler.pod_history(NAMESPACE, "unknown-1-use-1") == []
    assert apiserver.handler.pod_history(NAMESPACE, "unknown-1-keyed-1") == []
    assert stored_secret(apiserver, "weir-secret-absent") is None


def encoded(value: bytes) -> dict[str, str]:
    return {"value": base64.b64encode(value).decode()}


def put_secret(
    apiserver: ApiServerProcess,
    name: str,
    data: dict[str, str],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> None:
    """A Secret as `kubectl apply` (or an earlier runner) would have left it."""
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "uid": os.urandom(8).hex()}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    apiserver.handler.objects[SECRETS, NAMESPACE, name] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": data,
    }


def synced(secret: str) -> dict[str, dict[str, str]]:
    """Labels and annotations of the Secret weir syncs stored secret `secret` into."""
    return {
        "labels": {"app.kubernetes.io/managed-by": "weir"},
        "annotations": {"weir.dev/secret": secret},
    }


async def run_with_secret(client: Client, flow_id: str, secret: str) -> None:
    """Run a pod that reads `secret`: the runner syncs it into `weir-secret-<secret>`."""
    spec = {
        "id": flow_id,
        "name": "uses-secret",
        "tasks": [
            pod_task("use", "true", env=[{"name": "TOKEN", "fromSecret": secret}], retry=ONCE)
        ],
    }
    view = await run_flow(client, spec)
    assert view.status == "succeeded", view


async def test_removed_secret_deletes_its_synced_secret_but_never_one_weir_did_not_create(
    kube_client: Client, store: SecretStore, apiserver: ApiServerProcess
) -> None:
    await store.set("api-token", VALUE.encode())
    await run_with_secret(kube_client, "rm-1", "api-token")
    assert stored_secret(apiserver, "weir-secret-api-token") is not None
    # Someone's own Secret under the name weir would use, and a stored secret of that name.
    put_secret(apiserver, "weir-secret-hand-made", encoded(b"theirs"))
    await store.set("hand-made", b"ours")

    await store.delete("hand-made")
    await store.delete("api-token")  # `weir secret rm api-token`

    await until(
        lambda: stored_secret(apiserver, "weir-secret-api-token") is None,
        "the Secret of the removed secret is deleted",
        SYNC_WAIT,
    )
    hand_made = stored_secret(apiserver, "weir-secret-hand-made")
    assert hand_made is not None  # its removal was handled before api-token's: left alone
    assert hand_made["data"] == encoded(b"theirs")


async def test_new_value_reaches_the_synced_secret_without_waiting_for_a_pod(
    kube_client: Client, store: SecretStore, apiserver: ApiServerProcess
) -> None:
    await store.set("api-token", VALUE.encode())
    await run_with_secret(kube_client, "set-1", "api-token")

    await store.set("unused", b"no pod reads it")
    await store.set("api-token", b"rotated-value")  # `weir secret set api-token`

    def rotated() -> bool:
        secret = stored_secret(apiserver, "weir-secret-api-token")
        return secret is not None and secret["data"] == encoded(b"rotated-value")

    await until(rotated, "the synced Secret holds the new value", SYNC_WAIT)
    # Secrets are made for pods that need them, not for every stored secret.
    assert stored_secret(apiserver, "weir-secret-unused") is None


async def test_runner_start_deletes_orphaned_synced_secrets_and_updates_stale_ones(
    monkeypatch: pytest.MonkeyPatch,
    kube_settings: Settings,
    executor: KubernetesExecutor,
    apiserver: ApiServerProcess,
) -> None:
    monkeypatch.setenv(SECRET_KEY_ENV, new_secret_key())
    nc = await connect(kube_settings.nats_url, "test-secrets")
    try:
        store = SecretStore(nc.jetstream(), secret_key_from_env())
        await store.set("kept", b"changed while no runner ran")
        # Left by a runner before `weir secret rm gone` and `weir secret set kept`:
        put_secret(apiserver, "weir-secret-gone", encoded(b"old"), **synced("gone"))
        put_secret(apiserver, "weir-secret-kept", encoded(b"old"), **synced("kept"))
        # Not weir's to delete: no label, weir's label but no annotation, and weir's label
        # and annotation on a Secret of another name (copied from a synced one).
        put_secret(apiserver, "weir-secret-theirs", encoded(b"theirs"))
        put_secret(
            apiserver,
            "weir-task-nats",
            {"url": base64.b64encode(b"nats://nats:4222").decode()},
            labels={"app.kubernetes.io/managed-by": "weir"},
        )
        put_secret(apiserver, "copied", encoded(b"copy"), **synced("gone"))

        await ensure_streams(nc.jetstream())  # the scheduler's part: runners only wait
        runner = Runner(kube_settings, executor=executor)
        runner_task = await _start("runner", runner)
        try:
            await until(
                lambda: executor.secret_sync is not None and executor.secret_sync.reconciles > 0,
                "the runner reconciles the synced Secrets when it starts",
                SYNC_WAIT,
            )
        finally:
            runner.stop.set()
            await asyncio.wait_for(runner_task, 30)
    finally:
        await close(nc)

    assert stored_secret(apiserver, "weir-secret-gone") is None
    kept = stored_secret(apiserver, "weir-secret-kept")
    assert kept is not None
    assert kept["data"] == encoded(b"changed while no runner ran")
    for name in ("weir-secret-theirs", "weir-task-nats", "copied"):
        assert stored_secret(apiserver, name) is not None, name


async def test_secret_removed_while_the_api_server_is_down_is_deleted_once_it_is_back(
    kube_client: Client,
    store: SecretStore,
    apiserver: ApiServerProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await store.set("api-token", VALUE.encode())
    await run_with_secret(kube_client, "down-1", "api-token")

    await apiserver.stop()
    await store.delete("api-token")
    await until(
        lambda: any(
            r.getMessage() == "Kubernetes API call failed; retrying" for r in caplog.records
        ),
        "the runner tries to reach the API server about the removed secret",
        SYNC_WAIT,
    )
    await apiserver.start()

    await until(
        lambda: stored_secret(apiserver, "weir-secret-api-token") is None,
        "the Secret of the removed secret is deleted once the API server is back",
        SYNC_WAIT,
    )
