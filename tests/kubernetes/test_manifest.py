"""The pod an attempt becomes: pure data, checked field by field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from weir_proto.messages import Dispatch
from weir_proto.spec import TaskSpec
from weir_runner.executors.kubernetes.manifest import pod_manifest, secret_key_ref

from tests.flows import dispatch_of


def manifest(**task: Any) -> dict[str, Any]:
    work = dispatch_of({"name": "load", "cmd": ["run", "--fast"], **task}, "etl-7", attempt=2)
    return pod_manifest(work, "batch")


def test_pod_is_named_after_the_attempt_and_labelled_for_the_runners_watch() -> None:
    pod = manifest(image="etl:1", kubernetes={"labels": {"team": "data", "weir.dev/task": "x"}})

    assert pod["metadata"]["name"] == "etl-7-load-2"
    assert pod["metadata"]["namespace"] == "batch"
    assert pod["metadata"]["labels"] == {
        "team": "data",
        "app.kubernetes.io/managed-by": "weir",
        "weir.dev/flow": "etl-7",
        "weir.dev/task": "load",  # a task cannot relabel its pod away from the runner
        "weir.dev/attempt": "2",
    }
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert (container["image"], container["command"]) == ("etl:1", ["run", "--fast"])


def test_secrets_are_referenced_never_copied_into_the_pod() -> None:
    pod = manifest(
        image="etl:1",
        env=[
            {"name": "TOKEN", "fromSecret": "api-token"},
            {"name": "PASSWORD", "fromSecret": "db/password"},
            {"name": "MODE", "value": "full"},
        ],
    )

    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["TOKEN"] == {
        "name": "TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "value"}},
    }
    assert env["PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "password"}
    assert env["MODE"] == {"name": "MODE", "value": "full"}
    assert env["WEIR_ATTEMPT_ID"]["value"] == "etl-7-load-2"
    assert secret_key_ref("a/b") == {"name": "a", "key": "b"}


def test_pod_is_locked_down_by_default() -> None:
    pod = manifest(image="etl:1")

    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "activeDeadlineSeconds" not in pod["spec"]


def test_timeout_and_kubernetes_options_are_mapped() -> None:
    pod = manifest(
        image="etl:1",
        timeout=90.5,
        kubernetes={
            "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}},
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "serviceAccountName": "etl",
            "imagePullSecrets": ["registry"],
            "annotations": {"owner": "data"},
        },
    )

    spec = pod["spec"]
    assert spec["activeDeadlineSeconds"] == 91
    assert spec["containers"][0]["resources"] == {
        "requests": {"cpu": "500m"},
        "limits": {"memory": "1Gi"},
    }
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["serviceAccountName"] == "etl"
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["metadata"]["annotations"] == {"owner": "data"}


def test_pod_security_defaults_and_what_a_task_may_change() -> None:

    from weir_runner.executors.kubernetes.manifest import pod_manifest

    def pod(options: dict[str, object], non_root: bool = False) -> dict[str, object]:
        task = msgspec.convert(
            {
                "name": "t",
                "cmd": ["true"],
                "image": "alpine",
                "queue": "default",
                "kubernetes": options,
            },
            TaskSpec,
        )
        job = Dispatch(
            flow_id="f",
            attempt=1,
            attempt_id="f-t-1",
            task=task,
            dispatched_at=datetime.now(UTC),
            token="attempt-token",
        )
        return pod_manifest(job, "batch", run_as_non_root=non_root)["spec"]  # type: ignore[no-any-return]

    plain = pod({})
    assert plain["automountServiceAccountToken"] is False
    assert "runAsNonRoot" not in plain["securityContext"]  # type: ignore[operator]
    assert pod({}, non_root=True)["securityContext"]["runAsNonRoot"] is True  # type: ignore[index]
    chosen = pod(
        {"runAsNonRoot": False, "runAsUser": 1000, "automountServiceAccountToken": True}, True
    )
    assert "runAsNonRoot" not in chosen["securityContext"]  # type: ignore[operator]
    assert chosen["securityContext"]["runAsUser"] == 1000  # type: ignore[index]
    assert chosen["automountServiceAccountToken"] is True
