"""The pod of one attempt: pure data from the dispatch, nothing read from the cluster."""

from __future__ import annotations

import math
from typing import Any

from weir_proto.messages import Dispatch
from weir_proto.spec import KubernetesOptions, TaskSpec

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "weir"
FLOW_LABEL = "weir.dev/flow"
TASK_LABEL = "weir.dev/task"
ATTEMPT_LABEL = "weir.dev/attempt"
POD_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
"""The label selector of the runner's one watch: every pod weir created, none other."""

CONTAINER_NAME = "task"
SECRET_DEFAULT_KEY = "value"
"""`fromSecret: name` reads this key of Secret `name`; `fromSecret: name/key` names the key."""

Pod = dict[str, Any]


def secret_key_ref(from_secret: str) -> dict[str, str]:
    """`api-token` -> Secret `api-token` key `value`; `db/password` -> Secret `db` key
    `password`."""
    name, _, key = from_secret.partition("/")
    return {"name": name, "key": key or SECRET_DEFAULT_KEY}


def pod_labels(dispatch: Dispatch) -> dict[str, str]:
    """The task's own labels, then ours: a task cannot hide its pod from the runner."""
    options = dispatch.task.kubernetes or KubernetesOptions()
    return {
        **options.labels,
        MANAGED_BY_LABEL: MANAGED_BY,
        FLOW_LABEL: dispatch.flow_id,
        TASK_LABEL: dispatch.task.name,
        ATTEMPT_LABEL: str(dispatch.attempt),
    }


def _environment(dispatch: Dispatch) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "WEIR_FLOW_ID", "value": dispatch.flow_id},
        {"name": "WEIR_TASK", "value": dispatch.task.name},
        {"name": "WEIR_ATTEMPT", "value": str(dispatch.attempt)},
        {"name": "WEIR_ATTEMPT_ID", "value": dispatch.attempt_id},
    ]
    for var in dispatch.task.env:
        if var.from_secret is not None:  # the secret's value never enters the pod spec
            env.append(
                {"name": var.name, "valueFrom": {"secretKeyRef": secret_key_ref(var.from_secret)}}
            )
        else:
            env.append({"name": var.name, "value": var.value or ""})
    return env


def _container(task: TaskSpec, dispatch: Dispatch) -> dict[str, Any]:
    options = task.kubernetes or KubernetesOptions()
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": task.image,
        "command": list(task.cmd),  # argv as given: no shell, never split
        "env": _environment(dispatch),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if options.resources is not None:
        resources: dict[str, dict[str, str]] = {}
        if options.resources.requests:
            resources["requests"] = dict(options.resources.requests)
        if options.resources.limits:
            resources["limits"] = dict(options.resources.limits)
        container["resources"] = resources
    return container


def pod_manifest(dispatch: Dispatch, namespace: str) -> Pod:
    """The pod that runs `dispatch`: named after the attempt, so creating it twice is a
    conflict, never a second run."""
    task = dispatch.task
    options = task.kubernetes or KubernetesOptions()
    metadata: dict[str, Any] = {
        "name": dispatch.attempt_id,
        "namespace": namespace,
        "labels": pod_labels(dispatch),
    }
    if options.annotations:
        metadata["annotations"] = dict(options.annotations)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(task, dispatch)],
    }
    if task.timeout is not None:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(task.timeout))
    if options.node_selector:
        spec["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        spec["tolerations"] = [
            {
                key: value
                for key, value in {
                    "key": t.key,
                    "operator": t.operator,
                    "value": t.value,
                    "effect": t.effect,
                    "tolerationSeconds": t.toleration_seconds,
                }.items()
                if value is not None
            }
            for t in options.tolerations
        ]
    if options.service_account_name:
        spec["serviceAccountName"] = options.service_account_name
    if options.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in options.image_pull_secrets]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
