"""The manifests in deploy/kubernetes: every resource the kustomization lists exists and is
valid against the Kubernetes schema (offline, with kubernetes-validate), the pieces are wired
to each other, the runner's Role grants exactly what the executor calls and the docs say, and
tasks are kept away from weir: NATS wants a password from every client (the users and
permissions of deploy/nats/permissions.conf), NetworkPolicies admit only weir's own pods,
and task pods run in a namespace of their own without an API token."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.files import image_steps

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
PERMISSIONS = ROOT / "deploy" / "nats" / "permissions.conf"
POD_API = ROOT / "services/runner/weir_runner/executors/kubernetes/api.py"
KUBERNETES_DOC = ROOT / "docs" / "kubernetes.md"
WEIR, TASKS = "weir", "weir-tasks"
"""weir's own namespace, and the task pods'."""
NATS_USERS_SECRET = "weir-nats-users"
ROLES = {
    "weir-scheduler": "SCHEDULER",
    "weir-runner": "RUNNER",
    "weir-submitter": "SUBMITTER",
    "weir-operator": "ADMIN",
    "weir-task": "TASK",
    "weir-web": "WEB",
}
"""Each NATS user and its permissions, as docs/security.md lists them."""
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


def nats_conf() -> str:
    conf: str = documents()[("ConfigMap", "nats-config")]["data"]["nats.conf"]
    return conf


_USER = re.compile(r"\{user:\s*([\w-]+),\s*password:\s*\$(\w+),\s*permissions:\s*\$(\w+)\}")


def nats_users(conf: str) -> dict[str, tuple[str, str]]:
    """user -> (the environment variable holding its password, its permissions variable),
    from the `authorization` block of a NATS config."""
    block = conf[conf.index("authorization {") :]
    return {user: (password, role) for user, password, role in _USER.findall(block)}


def test_every_resource_the_kustomization_lists_exists() -> None:
    listed = kustomization()
    # Resources name their namespaces: a kustomization `namespace:` would move them all.
    assert "namespace" not in listed
    assert listed["resources"], "the kustomization lists no resources"
    on_disk = {path.name for path in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    missing = [name for name in listed["resources"] if not (DEPLOY / name).is_file()]
    assert missing == [], f"listed but missing: {missing}"
    assert set(listed["resources"]) == on_disk, "a manifest is not in the kustomization"
    for name in listed["resources"]:
        assert any(file == name for file, _ in resources()), f"{name} holds no resource"
    assert {
        ("Namespace", WEIR),
        ("Namespace", TASKS),
        ("ServiceAccount", "weir-runner"),
        ("ServiceAccount", "default"),
        ("Role", "weir-runner"),
        ("RoleBinding", "weir-runner"),
        ("Deployment", "weir-runner"),
        ("Deployment", "weir-scheduler"),
        ("Deployment", "weir-web"),
        ("Service", "weir-web"),
        ("ConfigMap", "nats-config"),
        ("Service", "nats"),
        ("StatefulSet", "nats"),
        ("Service", "postgres"),
        ("StatefulSet", "postgres"),
        ("NetworkPolicy", "nats-clients"),
        ("NetworkPolicy", "postgres-clients"),
        ("NetworkPolicy", "weir-web-clients"),
    } <= set(documents())


def test_every_resource_names_one_of_the_two_namespaces() -> None:
    for (kind, name), doc in documents().items():
        if kind != "Namespace":
            assert doc["metadata"].get("namespace") in (WEIR, TASKS), (kind, name)
    namespaced = {doc["metadata"]["namespace"] for doc in workloads()}
    assert namespaced == {WEIR}, "weir's own workloads all run in its namespace"


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


def role_rules() -> dict[str, list[str]]:
    """resource -> sorted verbs of the runner's Role (core API group only)."""
    rules: dict[str, list[str]] = {}
    for rule in documents()[("Role", "weir-runner")]["rules"]:
        assert rule["apiGroups"] == [""], rule
        assert "resourceNames" not in rule, "Kubernetes ignores them for create and list"
        for resource in rule["resources"]:
            assert resource not in rules, f"{resource} is in two rules"
            rules[resource] = sorted(rule["verbs"])
    return rules


def verbs_the_executor_uses() -> dict[str, list[str]]:
    """resource -> sorted RBAC verbs of every call in the executor's API module."""
    verb_of = {"create": "create", "read": "get", "list": "list", "patch": "patch"}
    verb_of |= {"delete": "delete", "replace": "update"}
    source = POD_API.read_text()
    used: dict[str, set[str]] = {}
    for action, kind, log in re.findall(r'"(\w+?)_namespaced_(pod|secret)(_log)?"', source):
        resource = f"{kind}s/log" if log else f"{kind}s"
        used.setdefault(resource, set()).add(verb_of[action])
    if '"watch": True' in source:  # the one watch, over pods
        used["pods"].add("watch")
    return {resource: sorted(verbs) for resource, verbs in used.items()}


def documented_verbs() -> dict[str, list[str]]:
    """resource -> sorted verbs, from the table of docs/kubernetes.md#permissions."""
    section = KUBERNETES_DOC.read_text().split("## Permissions\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w/]+)` \| `([a-z ]+)` \|", section, re.MULTILINE)
    assert rows, "docs/kubernetes.md#permissions has no table of the Role's rights"
    return {resource: sorted(verbs.split()) for resource, verbs in rows}


def test_runner_role_grants_exactly_what_the_executor_calls_and_the_docs_say() -> None:
    assert "ClusterRole" not in kinds() and "ClusterRoleBinding" not in kinds()
    assert [key for key in documents() if key[0] == "Role"] == [("Role", "weir-runner")]
    assert documents()[("Role", "weir-runner")]["metadata"]["namespace"] == TASKS
    assert role_rules() == {
        "pods": ["create", "delete", "get", "list", "watch"],
        "pods/log": ["get"],
        "secrets": ["create", "delete", "get", "list", "patch"],
    }
    assert role_rules() == verbs_the_executor_uses()
    assert role_rules() == documented_verbs()


def test_runner_is_bound_in_the_task_namespace_and_runs_its_pods_there() -> None:
    docs = documents()
    binding = docs[("RoleBinding", "weir-runner")]
    account = docs[("ServiceAccount", "weir-runner")]
    role = docs[("Role", "weir-runner")]
    pod = pod_spec("Deployment", "weir-runner")

    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"] == TASKS
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "weir-runner", "namespace": WEIR}
    ]
    assert account["metadata"]["namespace"] == WEIR
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    runner = env("Deployment", "weir-runner")
    assert runner["WEIR_EXECUTOR"]["value"] == "kubernetes"
    assert runner["WEIR_KUBE_NAMESPACE"] == {"name": "WEIR_KUBE_NAMESPACE", "value": TASKS}


def test_task_pods_namespace_mounts_no_api_token_and_admits_no_privileged_pod() -> None:
    default = documents()[("ServiceAccount", "default")]
    assert default["metadata"]["namespace"] == TASKS
    assert default["automountServiceAccountToken"] is False
    labels = documents()[("Namespace", TASKS)]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] in ("baseline", "restricted")
    own = documents()[("Namespace", WEIR)]["metadata"]["labels"]
    assert own["pod-security.kubernetes.io/enforce"] == "restricted"


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
    for workload in ("weir-scheduler", "weir-runner", "weir-web"):
        assert env("Deployment", workload)["WEIR_NATS_URL"]["value"] == "nats://nats:4222"


def test_nats_has_jetstream_on_its_volume_and_a_large_enough_max_payload() -> None:
    conf = nats_conf()
    assert "max_payload: 8MB" in conf
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


def monitoring_listen(conf: str) -> str:
    listen: str
    [listen] = re.findall(r"^\s*http:\s*(\S+)\s*$", conf, re.MULTILINE)
    assert not re.search(r"^\s*(http_port|https?_port|https|http_host):", conf, re.MULTILINE)
    return listen


def test_nats_monitoring_is_on_the_pods_loopback_only_and_in_no_service() -> None:
    listen = monitoring_listen(nats_conf())
    assert listen == "127.0.0.1:8222"
    service = documents()[("Service", "nats")]
    assert [(port["port"], port["targetPort"]) for port in service["spec"]["ports"]] == [
        (4222, "client")
    ]
    container = pod_spec("StatefulSet", "nats")["containers"][0]
    assert container["ports"] == [{"name": "client", "containerPort": 4222}]
    # The probes ask the monitoring endpoint from inside the pod, where it listens.
    for probe in ("readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[0] == "wget" and command[-1] == (
            f"http://{listen}/healthz?js-enabled-only=true"
        ), probe


def test_nats_config_has_a_user_with_a_password_for_each_role() -> None:
    conf = nats_conf()
    users = nats_users(conf)
    assert {user: role for user, (_, role) in users.items()} == ROLES
    for role in ROLES.values():
        assert re.search(rf"^{role} = {{$", conf, re.MULTILINE), f"{role} is not defined"
    # No way in without a password: no token, no anonymous user, no open accounts.
    for escape in ("no_auth_user", "token:", "accounts", "allow_non_tls"):
        assert escape not in conf, escape


def shared_part(conf: str) -> str:
    """The roles and the users, from the first role on."""
    return conf[conf.index("# Schedulers: own the streams") :].strip()


def test_nats_config_has_the_users_and_permissions_of_permissions_conf() -> None:
    assert shared_part(nats_conf()) == shared_part(PERMISSIONS.read_text())


def test_nats_server_takes_every_password_from_the_nats_users_secret() -> None:
    variables = env("StatefulSet", "nats")
    for user, (password, _) in nats_users(nats_conf()).items():
        ref = variables[password]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == NATS_USERS_SECRET, user
        assert "value" not in variables[password]


def test_every_nats_client_has_its_own_user_and_its_password_from_the_secret() -> None:
    users = nats_users(nats_conf())
    server = env("StatefulSet", "nats")
    clients = {
        doc["metadata"]["name"]
        for doc in workloads()
        if "WEIR_NATS_URL" in env(doc["kind"], doc["metadata"]["name"])
    }
    assert clients == {"weir-scheduler", "weir-runner", "weir-web"}
    for name in clients:
        variables = env("Deployment", name)
        user = variables["WEIR_NATS_USER"]["value"]
        assert user == name and user in users, name
        assert "value" not in variables["WEIR_NATS_PASSWORD"], f"{name}: a password in plain text"
        ref = variables["WEIR_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        # The key the server reads this user's password from.
        assert ref == server[users[user][0]]["valueFrom"]["secretKeyRef"], name
        assert "@" not in variables["WEIR_NATS_URL"]["value"], name


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


@dataclass(frozen=True)
class Peer:
    """A pod as NetworkPolicies see it: its namespace and labels."""

    namespace: str
    labels: dict[str, str] = field(default_factory=dict)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if not {
            "In": present and labels.get(key) in (values or []),
            "NotIn": not present or labels.get(key) not in (values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def _namespace_labels(namespace: str) -> dict[str, str]:
    # The API server labels every namespace with its name.
    declared = documents().get(("Namespace", namespace), {"metadata": {}})["metadata"]
    return {**declared.get("labels", {}), "kubernetes.io/metadata.name": namespace}


def admitted(source: Peer, target: Peer, port: int) -> bool:
    """Whether the NetworkPolicies of the manifests let `source` connect to `target`:`port`
    (Kubernetes' semantics: a pod selected by no Ingress policy admits everything; else a
    connection needs one rule of one selecting policy whose ports and peers match)."""
    policies = [
        doc
        for (kind, _), doc in documents().items()
        if kind == "NetworkPolicy"
        and doc["metadata"]["namespace"] == target.namespace
        and "Ingress" in doc["spec"]["policyTypes"]
        and _selects(doc["spec"]["podSelector"], target.labels)
    ]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            assert all(isinstance(p, int) for p in ports), "named ports: resolve them here"
            if ports and port not in ports:
                continue
            peers = rule.get("from") or []
            if not peers:
                return True
            for peer in peers:
                assert "ipBlock" not in peer, "an ipBlock admits pods by address, not by label"
                if "namespaceSelector" in peer:
                    labels = _namespace_labels(source.namespace)
                    in_namespace = _selects(peer["namespaceSelector"], labels)
                else:
                    in_namespace = source.namespace == policy["metadata"]["namespace"]
                pod = peer.get("podSelector")
                if in_namespace and (pod is None or _selects(pod, source.labels)):
                    return True
    return False


def weir_pod(name: str, kind: str = "Deployment") -> Peer:
    labels = documents()[(kind, name)]["spec"]["template"]["metadata"]["labels"]
    return Peer(documents()[(kind, name)]["metadata"]["namespace"], labels)


def task_pod(**kubernetes: Any) -> Peer:
    """A task attempt's pod as the runner makes it, in the runner's WEIR_KUBE_NAMESPACE."""
    from weir_runner.executors.kubernetes.manifest import pod_manifest

    from tests.flows import dispatch_of

    fields = {"name": "t", "image": "busybox", "cmd": ["true"], "kubernetes": kubernetes}
    namespace = env("Deployment", "weir-runner")["WEIR_KUBE_NAMESPACE"]["value"]
    metadata = pod_manifest(dispatch_of(fields), namespace)["metadata"]
    return Peer(metadata["namespace"], metadata["labels"])


def test_only_weirs_own_pods_reach_nats_and_only_the_scheduler_reaches_postgres() -> None:
    nats, postgres = weir_pod("nats", "StatefulSet"), weir_pod("postgres", "StatefulSet")
    scheduler, runner = weir_pod("weir-scheduler"), weir_pod("weir-runner")
    web = weir_pod("weir-web")
    task = task_pod()
    # A task may set labels on its pod: those of weir's own pods get it nowhere.
    disguised = task_pod(labels={"app.kubernetes.io/name": "weir-scheduler"})
    stranger = Peer(WEIR, {"app.kubernetes.io/name": "debug-shell"})
    elsewhere = Peer("default", {"app.kubernetes.io/managed-by": "weir"})
    not_weirs = Peer(TASKS, {"app": "someone-elses"})
    assert task.namespace == TASKS

    allowed = [(scheduler, nats, 4222), (runner, nats, 4222), (web, nats, 4222)]
    allowed += [(task, nats, 4222)]
    allowed += [(scheduler, postgres, 5432)]
    assert [admitted(*case) for case in allowed] == [True] * len(allowed)

    refused = [
        (task, nats, 8222),
        (task, postgres, 5432),
        (disguised, postgres, 5432),
        (runner, postgres, 5432),
        (web, postgres, 5432),
        (web, nats, 8222),
        (stranger, nats, 4222),
        (elsewhere, nats, 4222),
        (not_weirs, nats, 4222),
        (scheduler, nats, 8222),
    ]
    for target in (scheduler, runner, task):  # nothing listens there: nothing gets in
        refused += [(source, target, 8080) for source in (scheduler, runner, task, stranger)]
    assert [case for case in refused if admitted(*case)] == []


def test_both_namespaces_deny_ingress_by_default() -> None:
    for namespace in (WEIR, TASKS):
        assert any(
            doc["metadata"]["namespace"] == namespace
            and doc["spec"]["podSelector"] == {}
            and doc["spec"]["policyTypes"] == ["Ingress"]
            and not doc["spec"].get("ingress")
            for (kind, _), doc in documents().items()
            if kind == "NetworkPolicy"
        ), f"namespace {namespace} has no default-deny ingress policy"


INGRESS_NAMESPACE = "ingress-nginx"
"""The ingress controller's namespace, which networkpolicy.yaml admits to weir-web."""


def test_only_the_ingress_controller_reaches_weir_web_and_only_on_its_port() -> None:
    web = weir_pod("weir-web")
    controller = Peer(INGRESS_NAMESPACE, {"app.kubernetes.io/name": "ingress-nginx"})
    assert admitted(controller, web, 8080)
    # weir-web takes tokens, but a task (untrusted code) or any other pod of the cluster
    # does not even get to try one.
    refused = [
        (task_pod(), web, 8080),
        (task_pod(labels={"app.kubernetes.io/name": "ingress-nginx"}), web, 8080),
        (Peer(WEIR, {"app.kubernetes.io/name": "debug-shell"}), web, 8080),
        (Peer("default", {"app.kubernetes.io/name": "ingress-nginx"}), web, 8080),
        (weir_pod("weir-scheduler"), web, 8080),
        (controller, web, 4222),
        (controller, weir_pod("nats", "StatefulSet"), 4222),
        (controller, weir_pod("postgres", "StatefulSet"), 5432),
    ]
    assert [case for case in refused if admitted(*case)] == []
    service = documents()[("Service", "weir-web")]
    assert service["spec"]["type"] == "ClusterIP"
    assert [port["port"] for port in service["spec"]["ports"]] == [8080]


def test_weir_web_listens_on_its_port_with_the_tokens_and_session_key_of_its_secrets(
    tmp_path: Path,
) -> None:
    from weir.config import ConfigError
    from weir_web.config import WebSettings

    from tests.web.conftest import SESSION_KEY, write_session_key, write_tokens

    pod = pod_spec("Deployment", "weir-web")
    [container] = pod["containers"]
    variables = env("Deployment", "weir-web")
    listen = variables["WEIR_WEB_LISTEN"]["value"]
    assert listen == "0.0.0.0:8080"
    assert container["ports"] == [{"name": "http", "containerPort": 8080}]
    # The tokens file and the session key are Secrets, mounted read-only where their variables
    # point, and readable by the pod's user only through its group.
    for variable, secret, key_name in (
        ("WEIR_WEB_TOKENS", "weir-web-tokens", "tokens"),
        ("WEIR_WEB_SESSION_KEY_FILE", "weir-web-session", "key"),
    ):
        path = Path(variables[variable]["value"])
        [mount] = [m for m in container["volumeMounts"] if path.parent == Path(m["mountPath"])]
        assert mount["readOnly"] is True
        [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == secret
        assert volume["secret"]["items"] == [{"key": key_name, "path": path.name}]
        assert volume["secret"]["defaultMode"] & 0o007 == 0, f"{secret} is not for others"
        assert volume["secret"]["defaultMode"] & 0o040, f"the pod's group reads {secret}"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # weir-web starts with this environment and such files, and refuses to without them.
    tokens = str(write_tokens(tmp_path / "t"))
    key = str(write_session_key(tmp_path / "k"))
    settings = {
        "WEIR_WEB_LISTEN": listen,
        "WEIR_WEB_TOKENS": tokens,
        "WEIR_WEB_SESSION_KEY_FILE": key,
    }
    assert WebSettings.from_env(settings).session_key == SESSION_KEY
    with pytest.raises(ConfigError, match="WEIR_WEB_TOKENS is not set"):
        WebSettings.from_env({"WEIR_WEB_LISTEN": listen})
    with pytest.raises(ConfigError, match="WEIR_WEB_SESSION_KEY_FILE is not set"):
        WebSettings.from_env({"WEIR_WEB_LISTEN": listen, "WEIR_WEB_TOKENS": tokens})


def test_weir_web_is_ready_when_its_probe_passes_and_alive_while_it_serves() -> None:
    [container] = pod_spec("Deployment", "weir-web")["containers"]
    # tests/web/test_probe.py runs this command against a real weir-web.
    assert container["readinessProbe"]["exec"]["command"] == ["python", "-m", "weir_web.probe"]
    assert (ROOT / "services/web/weir_web/probe.py").is_file()
    liveness = container["livenessProbe"]["httpGet"]
    assert (liveness["path"], liveness["port"]) == ("/api/v1/openapi.json", "http")


def test_every_weir_image_is_built_by_the_dockerfile_of_its_entrypoint() -> None:
    for doc in workloads():
        for container in doc["spec"]["template"]["spec"]["containers"]:
            image = container["image"].rsplit(":", 1)[0]
            if not image.startswith("weir-"):
                continue
            target = image.removeprefix("weir-")
            assert ("ENTRYPOINT", f'["{image}"]') in image_steps(target), doc["metadata"]["name"]
