"""The runner's manifests in deploy/kubernetes grant exactly what the executor uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def documents() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    found: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / resource).read_text()):
            found[doc["kind"]] = doc
    return found


def test_runner_role_is_namespaced_and_least_privilege() -> None:
    docs = documents()

    assert "ClusterRole" not in docs and "ClusterRoleBinding" not in docs
    rules = {
        (tuple(rule["apiGroups"]), resource): sorted(rule["verbs"])
        for rule in docs["Role"]["rules"]
        for resource in rule["resources"]
    }
    assert rules == {
        (("",), "pods"): ["create", "delete", "get", "list", "watch"],
        (("",), "pods/log"): ["get"],
    }


def test_runner_deployment_uses_the_bound_service_account_and_kubernetes_executor() -> None:
    docs = documents()
    binding, account = docs["RoleBinding"], docs["ServiceAccount"]
    pod = docs["Deployment"]["spec"]["template"]["spec"]

    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": docs["Role"]["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["WEIR_EXECUTOR"]["value"] == "kubernetes"
    assert env["WEIR_KUBE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
