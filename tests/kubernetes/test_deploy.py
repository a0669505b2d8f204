"""The manifests in deploy/kubernetes: every resource the kustomization lists exists and is
valid against the Kubernetes schema (offline, with kubernetes-validate), the pieces are wired
to each other, and the runner's Role grants exactly what the executor uses."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes the manifests are checked against (a minor kubernetes-validate has)."""

WORKLOADS = ("Deployment", "StatefulSet")


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return loaded


@cache
def _resources() -> tuple[tuple[str, dict[str, Any]], ...]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name in kustomization()["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            if doc is not None:  # an empty document (a trailing `---`) is no resource
                found.append((name, doc))
    return tuple(found)


def resources() -> list[tuple[str, dict[str, Any]]]:
    """(file, resource) for every document of every file the kustomization lists."""
    return list(_resources())


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource by (kind, name); a name used twice for one kind is an error."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name, doc in resources():
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in found, f"{name}: {key} is defined twice"
        found[key] = doc
    return found


def kinds() -> set[str]:
    return {kind for kind, _ in documents()}


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = documents()[(kind, name)]["spec"]["template"]["spec"]
    return spec


def env(kind: str, name: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod_spec(kind, name)["containers"][0].get("env", [])}


def workloads() -> list[dict[str, Any]]:
    return [doc for (kind, _), doc in documents().items() if kind in WORKLOADS]


def test_every_resource_the_kustomization_lists_exists() -> None:
    listed = kustomization()
    assert listed["namespace"] == "weir"
    assert listed["resources"], "the kustomization lists no resources"
    on_disk = {path.name for path in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    missing = [name for name in listed["resources"] if not (DEPLOY / name).is_file()]
    assert missing == [], f"listed but missing: {missing}"
    assert set(listed["resources"]) == on_disk, "a manifest is not in the kustomization"
    for name in listed["resources"]:
        assert any(file == name for file, _ in resources()), f"{name} holds no resource"
    assert {
        ("ServiceAccount", "weir-runner"),
        ("Role", "weir-runner"),
        ("RoleBinding", "weir-runner"),
        ("Deployment", "weir-runner"),
        ("Deployment", "weir-scheduler"),
        ("ConfigMap", "nats-config"),
        ("Service", "nats"),
        ("StatefulSet", "nats"),
        ("Service", "postgres"),
        ("StatefulSet", "postgres"),
    } <= set(documents())


def test_the_schema_version_is_shipped_by_kubernetes_validate() -> None:
    from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

    shipped = {".".join(v.split(".")[:2]) for v in all_versions()}
    assert KUBERNETES_VERSION in shipped, sorted(shipped)


def test_every_resource_is_valid_against_the_kubernetes_schema() -> None:
    failures: list[str] = []
    for name, doc in resources():
        what = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            # strict: unknown fields (a typo, a field at the wrong level) are errors too.
            used = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(part) for part in e.path)
            failures.append(f"{what}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            failures.append(f"{what}: {e.message}")
        else:
            assert used == KUBERNETES_VERSION, f"{what} was checked against {used}"
    assert failures == [], "\n".join(failures)


def test_runner_role_is_namespaced_and_least_privilege() -> None:
    docs = documents()

    assert "ClusterRole" not in kinds() and "ClusterRoleBinding" not in kinds()
    assert [key for key in docs if key[0] == "Role"] == [("Role", "weir-runner")]
    rules = {
        (tuple(rule["apiGroups"]), resource): sorted(rule["verbs"])
        for rule in docs[("Role", "weir-runner")]["rules"]
        for resource in rule["resources"]
    }
    assert rules == {
        (("",), "pods"): ["create", "delete", "get", "list", "watch"],
        (("",), "pods/log"): ["get"],
        (("",), "secrets"): ["create", "delete", "get", "list", "patch", "update"],
    }


def test_runner_deployment_uses_the_bound_service_account_and_kubernetes_executor() -> None:
    docs = documents()
    binding = docs[("RoleBinding", "weir-runner")]
    account = docs[("ServiceAccount", "weir-runner")]
    pod = pod_spec("Deployment", "weir-runner")

    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": docs[("Role", "weir-runner")]["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    runner = env("Deployment", "weir-runner")
    assert runner["WEIR_EXECUTOR"]["value"] == "kubernetes"
    assert runner["WEIR_KUBE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.namespace"
    )


def test_only_the_runner_gets_an_api_token() -> None:
    for doc in workloads():
        pod = doc["spec"]["template"]["spec"]
        if doc["metadata"]["name"] != "weir-runner":
            assert pod.get("automountServiceAccountToken") is False, doc["metadata"]["name"]
            assert "serviceAccountName" not in pod, doc["metadata"]["name"]


def test_scheduler_reaches_postgres_through_the_secret_and_nats_through_its_service() -> None:
    scheduler = documents()[("Deployment", "weir-scheduler")]
    assert scheduler["spec"]["replicas"] >= 2
    variables = env("Deployment", "weir-scheduler")
    assert variables["WEIR_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "weir-database",
        "key": "url",
    }
    assert "value" not in variables["WEIR_DATABASE_URL"]
    nats = documents()[("Service", "nats")]
    client_ports = {port["port"] for port in nats["spec"]["ports"]}
    assert 4222 in client_ports
    for workload in ("weir-scheduler", "weir-runner"):
        assert env("Deployment", workload)["WEIR_NATS_URL"]["value"] == "nats://nats:4222"


def test_nats_has_jetstream_on_its_volume_and_a_large_enough_max_payload() -> None:
    conf = documents()[("ConfigMap", "nats-config")]["data"]["nats.conf"]
    assert "max_payload: 8MB" in conf
    assert "http_port: 8222" in conf
    store_dir = next(
        line.split(":", 1)[1].strip()
        for line in conf.splitlines()
        if line.strip().startswith("store_dir:")
    )
    statefulset = documents()[("StatefulSet", "nats")]
    pod = statefulset["spec"]["template"]["spec"]
    container = pod["containers"][0]
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert mounts[store_dir] in claims
    config_volume = next(v for v in pod["volumes"] if v["name"] == mounts["/etc/nats"])
    assert config_volume["configMap"]["name"] == "nats-config"
    assert container["args"] == ["-c", "/etc/nats/nats.conf"]
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"].startswith("/healthz") and probe["port"] == "monitor"
    assert {"name": "monitor", "containerPort": 8222} in container["ports"]


def test_postgres_keeps_its_data_on_a_claim_and_its_credentials_in_a_secret() -> None:
    statefulset = documents()[("StatefulSet", "postgres")]
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    variables = env("StatefulSet", "postgres")
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD"):
        assert variables[name]["valueFrom"]["secretKeyRef"]["name"] == "weir-postgres"
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert variables["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    assert mounts["/var/lib/postgresql/data"] in claims
    assert "pg_isready" in " ".join(container["readinessProbe"]["exec"]["command"])


def test_every_service_selects_a_workload_and_its_named_ports() -> None:
    for (kind, name), service in documents().items():
        if kind != "Service":
            continue
        selector = service["spec"]["selector"]
        targets = [
            doc
            for doc in workloads()
            if selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"Service {name} selects no pods"
        named = {
            port["name"]
            for doc in targets
            for container in doc["spec"]["template"]["spec"]["containers"]
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named, f"Service {name}: no port {port['targetPort']}"
        governed = [doc for doc in targets if doc["kind"] == "StatefulSet"]
        for doc in governed:
            assert doc["spec"]["serviceName"] == name


def test_every_container_runs_non_root_locked_down_and_with_resources() -> None:
    for doc in workloads():
        name = doc["metadata"]["name"]
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
            assert "memory" in container["resources"]["limits"], name
