"""A task's spec cannot escalate on Kubernetes: what its `kubernetes` section and `fromSecret`
ask for beyond the runner's allow-lists and security floor is refused before any pod exists,
with one attempt and an error naming the field and the setting that would allow it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from weir.client import Client
from weir.config import Settings

from tests.kubernetes.cluster import ApiServerProcess
from tests.kubernetes.conftest import NAMESPACE
from tests.kubernetes.test_flows import pod_task, run_flow, tasks_of


@pytest.fixture
def kube_settings(kube_settings: Settings) -> Settings:
    """The runner of the shipped manifests: pods run as non-root."""
    return dataclasses.replace(kube_settings, kube_run_as_non_root=True)


ESCALATIONS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "another Secret": (
        {"env": [{"name": "DB", "fromSecret": "weir-database/url"}]},
        ['env DB: fromSecret "weir-database/url"', "(WEIR_KUBE_ALLOWED_SECRETS: db)"],
    ),
    "the runner's service account": (
        {
            "kubernetes": {
                "serviceAccountName": "weir-runner",
                "automountServiceAccountToken": True,
            }
        },
        [
            'kubernetes.serviceAccountName "weir-runner"',
            "(WEIR_KUBE_ALLOWED_SERVICE_ACCOUNTS: none allowed)",
        ],
    ),
    "the default service account's token": (
        {"kubernetes": {"automountServiceAccountToken": True}},
        ["kubernetes.automountServiceAccountToken needs a serviceAccountName"],
    ),
    "root": (
        {"kubernetes": {"runAsNonRoot": False, "runAsUser": 0}},
        [
            "kubernetes.runAsNonRoot: false is not allowed",
            "kubernetes.runAsUser: 0 (root) is not allowed",
            "WEIR_KUBE_RUN_AS_NON_ROOT",
        ],
    ),
    "an unconfined AppArmor profile": (
        {
            "kubernetes": {
                "annotations": {"container.apparmor.security.beta.kubernetes.io/task": "unconfined"}
            }
        },
        [
            'kubernetes.annotations "container.apparmor.security.beta.kubernetes.io/task"',
            "(WEIR_KUBE_ALLOWED_ANNOTATIONS: none allowed)",
        ],
    ),
    "a chosen node": (
        {"kubernetes": {"nodeSelector": {"kubernetes.io/hostname": "control-plane"}}},
        ['kubernetes.nodeSelector "kubernetes.io/hostname"', "(WEIR_KUBE_ALLOWED_NODE_SELECTORS"],
    ),
    "any taint": (
        {"kubernetes": {"tolerations": [{"operator": "Exists"}]}},
        ['kubernetes.tolerations "(every taint)"', "(WEIR_KUBE_ALLOWED_TOLERATIONS"],
    ),
}


@pytest.mark.parametrize("attempt", list(ESCALATIONS), ids=list(ESCALATIONS))
async def test_spec_asking_for_more_than_the_runner_allows_is_refused_without_a_pod(
    attempt: str, kube_client: Client, apiserver: ApiServerProcess
) -> None:
    extra, expected = ESCALATIONS[attempt]
    apiserver.handler.put_secret(NAMESPACE, "weir-database", {"url": "postgres://u:pw@db/weir"})
    flow_id = f"escalate-{list(ESCALATIONS).index(attempt)}"
    retry = {"max_attempts": 3}
    spec = {
        "id": flow_id,
        "name": "escalate",
        "tasks": [pod_task("t", "env", retry=retry, **extra)],
    }

    view = await run_flow(kube_client, spec)

    assert view.status == "failed"
    failed = tasks_of(view)["t"]
    assert failed.error_type == "refused"
    assert failed.error_message.startswith('task "t": ')
    for fragment in expected:
        assert fragment in failed.error_message
    assert "pw@db" not in failed.error_message
    (task,) = (await kube_client.get(flow_id)).tasks
    assert task.attempt == 1  # refused is final: retrying cannot change the runner's policy
    assert apiserver.handler.pod_history(NAMESPACE, f"{flow_id}-t-1") == []


async def test_every_refusal_of_a_task_is_named_at_once(
    kube_client: Client, apiserver: ApiServerProcess
) -> None:
    kubernetes = {"serviceAccountName": "weir-runner", "runAsUser": 0, "annotations": {"a": "b"}}
    spec = {"id": "many-1", "name": "many", "tasks": [pod_task("t", "true", kubernetes=kubernetes)]}

    view = await run_flow(kube_client, spec)

    message = tasks_of(view)["t"].error_message
    assert "serviceAccountName" in message and "runAsUser" in message
    assert 'annotations "a"' in message
    assert apiserver.handler.pod_history(NAMESPACE, "many-1-t-1") == []
