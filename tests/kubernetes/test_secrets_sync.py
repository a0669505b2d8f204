"""Secrets from weir's store reach pods through a Kubernetes Secret weir keeps in sync: the
value is only in that Secret's data, the pod holds a `secretKeyRef`, and a secret found
nowhere fails the task before any pod exists."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from weir.client import Client
from weir.config import Settings
from weir.jetstream import close, connect
from weir.secrets import SECRET_KEY_ENV, SecretStore, new_secret_key, secret_key_from_env

from tests.conftest import Services
from tests.kubernetes.cluster import SECRETS, ApiServerProcess
from tests.kubernetes.conftest import NAMESPACE
from tests.kubernetes.test_flows import ONCE, pod_task, run_flow, tasks_of

VALUE = "tok-3f9a1c7e"


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


def stored_secret(apiserver: ApiServerProcess, name: str) -> dict[str, object] | None:
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
            pod_task(
                "use",
                "sh",
                "-c",
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
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "weir"  # type: ignore[index]
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
    assert use.error_type == "executor"
    assert 'task "use": env PW wants secret "absent", which does not exist' in use.error_message
    assert "weir secret set absent" in use.error_message
    assert keyed.error_type == "executor"
    assert 'env DB wants Kubernetes Secret "db" key "password"' in keyed.error_message
    assert apiserver.handler.pod_history(NAMESPACE, "unknown-1-use-1") == []
    assert apiserver.handler.pod_history(NAMESPACE, "unknown-1-keyed-1") == []
    assert stored_secret(apiserver, "weir-secret-absent") is None
