"""The pod of one attempt: pure data from the dispatch, nothing read from the cluster."""

from __future__ import annotations

import hashlib
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
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
SYNCED_SECRET_PREFIX = "weir-secret-"
SYNCED_SECRET_ANNOTATION = "weir.dev/secret"
"""On a Secret weir keeps in sync: the name of the secret in weir's store it holds."""
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DNS_NAME_MAX = 253
_VOLUME_NAME_MAX = 100
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
"""Volume file names carry no `=` (the helpers' NAME=FILE arguments) nor anything odd."""

SecretRefs = Mapping[str, dict[str, str]]
"""`fromSecret` value -> the `secretKeyRef` it becomes (when not the default one)."""

Pod = dict[str, Any]

INPUTS_CONTAINER = "weir-inputs"
OUTPUTS_CONTAINER = "weir-outputs"
DATA_VOLUME = "weir-data"
DATA_ROOT = "/weir-data"
CREDS_VOLUME = "weir-nats"
CREDS_DIR = "/var/run/weir/nats"
WORKING_DIR = "/work"
"""Where relative input and output paths are, inside the task's container."""


NATS_USER_KEYS = (("WEIR_NATS_USER", "user"), ("WEIR_NATS_PASSWORD", "password"))
"""Variable of the helpers -> optional key of the credentials Secret: the task pods' NATS user
and password (the `weir-task` user of deploy/nats/permissions.conf), instead of `creds`."""

AWS_CREDENTIAL_KEYS = (
    ("AWS_ACCESS_KEY_ID", "aws-access-key-id"),
    ("AWS_SECRET_ACCESS_KEY", "aws-secret-access-key"),
)
"""Variable of the helpers -> key of the credentials Secret, when artifacts are in S3."""


@dataclass(frozen=True, slots=True)
class ArtifactPlumbing:
    """How the helper containers reach the artifacts: the weir image, the bucket, and the
    Secret holding `url` and optionally the NATS user limited to the bucket, as `user` and
    `password` or as a `creds` file."""

    helper_image: str = "weir:latest"
    bucket: str = "weir-artifacts"
    credentials_secret: str = "weir-task-nats"
    artifacts_url: str = ""
    """`s3://BUCKET/PREFIX`: the helpers use S3-compatible storage and no NATS, with the keys
    `aws-access-key-id` and `aws-secret-access-key` of `credentials_secret` when it has them
    (else boto3's own ways: a service account's role, ...)."""
    s3_endpoint_url: str = ""
    s3_region: str = ""


def _absolute(path: str) -> PurePosixPath:
    given = PurePosixPath(posixpath.normpath(path))
    return given if given.is_absolute() else PurePosixPath(WORKING_DIR) / given


def artifact_files(task: TaskSpec) -> dict[str, str]:
    """Each input or output path, as the task's container sees it -> its file in the pod's
    data volume. One file per path: a path that is both an input and an output is one file."""
    paths = [str(_absolute(i.path)) for i in task.inputs]
    paths += [str(_absolute(o.path)) for o in task.outputs]
    files: dict[str, str] = {}
    for path in paths:
        if path not in files:
            name = _SAFE_NAME.sub("_", PurePosixPath(path).name)
            files[path] = f"f{len(files)}-{name}"[:_VOLUME_NAME_MAX]
    return files


def secret_key_ref(from_secret: str) -> dict[str, str]:
    """`api-token` -> Secret `api-token` key `value`; `db/password` -> Secret `db` key
    `password`."""
    name, _, key = from_secret.partition("/")
    return {"name": name, "key": key or SECRET_DEFAULT_KEY}


def synced_secret_name(name: str) -> str:
    """The Kubernetes Secret holding secret `name` of weir's store: `weir-secret-<name>`, or,
    when that is no valid Secret name (`_`, too long), a cleaned name with a digest."""
    full = SYNCED_SECRET_PREFIX + name
    if len(full) <= _DNS_NAME_MAX and _DNS_NAME.match(full):
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    cleaned = re.sub(r"[^-a-z0-9.]", "-", name)[: _DNS_NAME_MAX - len(SYNCED_SECRET_PREFIX) - 13]
    return f"{SYNCED_SECRET_PREFIX}{cleaned.strip('-.')}-{digest}"


def task_label(task: str) -> str:
    """A task name as a label value: an instance `NAME[i]` of a mapped task is `NAME.i`
    (task names have no dots, so `task_of_label` reads it back)."""
    if task.endswith("]") and "[" in task:
        head, _, index = task[:-1].rpartition("[")
        return f"{head}.{index}"
    return task


def task_of_label(label: str) -> str:
    head, dot, index = label.rpartition(".")
    return f"{head}[{index}]" if dot and index.isdigit() else label


def pod_labels(dispatch: Dispatch) -> dict[str, str]:
    """The task's own labels, then ours: a task cannot hide its pod from the runner."""
    options = dispatch.task.kubernetes or KubernetesOptions()
    return {
        **options.labels,
        MANAGED_BY_LABEL: MANAGED_BY,
        FLOW_LABEL: dispatch.flow_id,
        TASK_LABEL: task_label(dispatch.task.name),
        ATTEMPT_LABEL: str(dispatch.attempt),
    }


def _environment(dispatch: Dispatch, secret_refs: SecretRefs) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "WEIR_FLOW_ID", "value": dispatch.flow_id},
        {"name": "WEIR_TASK", "value": dispatch.task.name},
        {"name": "WEIR_ATTEMPT", "value": str(dispatch.attempt)},
        {"name": "WEIR_ATTEMPT_ID", "value": dispatch.attempt_id},
    ]
    for var in dispatch.task.env:
        if var.from_secret is not None:  # the secret's value never enters the pod spec
            ref = secret_refs.get(var.from_secret) or secret_key_ref(var.from_secret)
            env.append({"name": var.name, "valueFrom": {"secretKeyRef": dict(ref)}})
        else:
            env.append({"name": var.name, "value": var.value or ""})
    return env


def _container(task: TaskSpec, dispatch: Dispatch, secret_refs: SecretRefs) -> dict[str, Any]:
    options = task.kubernetes or KubernetesOptions()
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": task.image,
        "command": list(task.cmd),  # argv as given: no shell, never split
        "env": _environment(dispatch, secret_refs),
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


def _helper_env(plumbing: ArtifactPlumbing) -> list[dict[str, Any]]:
    """Where the helpers find the artifacts; credentials only by reference to the Secret."""
    secret = plumbing.credentials_secret
    if not plumbing.artifacts_url:
        env: list[dict[str, Any]] = [
            {
                "name": "WEIR_NATS_URL",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": "url"}},
            },
            {"name": "WEIR_NATS_CREDS", "value": f"{CREDS_DIR}/creds"},
        ]
        for variable, key in NATS_USER_KEYS:  # unset where the Secret has no such key
            optional = {"name": secret, "key": key, "optional": True}
            env.append({"name": variable, "valueFrom": {"secretKeyRef": optional}})
        return [*env, {"name": "WEIR_ARTIFACTS_BUCKET", "value": plumbing.bucket}]
    env = [{"name": "WEIR_ARTIFACTS_URL", "value": plumbing.artifacts_url}]
    if plumbing.s3_endpoint_url:
        env.append({"name": "WEIR_S3_ENDPOINT_URL", "value": plumbing.s3_endpoint_url})
    if plumbing.s3_region:
        env.append({"name": "AWS_REGION", "value": plumbing.s3_region})
    for variable, key in AWS_CREDENTIAL_KEYS:
        ref: dict[str, Any] = {"name": secret, "key": key, "optional": True}
        env.append({"name": variable, "valueFrom": {"secretKeyRef": ref}})
    return env


def _helper(name: str, args: list[str], plumbing: ArtifactPlumbing) -> Pod:
    """A container of the weir image moving artifacts between the data volume and NATS
    (or S3)."""
    mounts: list[dict[str, Any]] = [{"name": DATA_VOLUME, "mountPath": DATA_ROOT}]
    if not plumbing.artifacts_url:
        mounts.append({"name": CREDS_VOLUME, "mountPath": CREDS_DIR, "readOnly": True})
    return {
        "name": name,
        "image": plumbing.helper_image,
        "command": ["python", "-m", "weir_runner.artifacts", *args],
        "workingDir": DATA_ROOT,
        "env": _helper_env(plumbing),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _with_artifacts(spec: dict[str, Any], dispatch: Dispatch, plumbing: ArtifactPlumbing) -> None:
    """Each input and output path is one file of the data volume, mounted (`subPath`) at
    exactly that path: nothing of the image is hidden, so `/result.txt` works as well as
    `out/result.txt`. An init container downloads the inputs and creates each output's file
    empty (dated 1970, so an output the task never wrote is told from an empty one). With
    outputs, the task itself runs as the last init container, so the upload container starts
    only after it exited 0."""
    task = dispatch.task
    files = artifact_files(task)
    container = spec["containers"][0]
    container["volumeMounts"] = [
        {"name": DATA_VOLUME, "mountPath": path, "subPath": file} for path, file in files.items()
    ]
    paths = [i.path for i in task.inputs] + [o.path for o in task.outputs]
    if any(not PurePosixPath(path).is_absolute() for path in paths):
        container["workingDir"] = WORKING_DIR
    spec["volumes"] = [{"name": DATA_VOLUME, "emptyDir": {}}]
    if not plumbing.artifacts_url:  # S3's credentials are variables, not a file
        spec["volumes"].append(
            {
                "name": CREDS_VOLUME,
                "secret": {
                    "secretName": plumbing.credentials_secret,
                    "optional": True,
                    "items": [{"key": "creds", "path": "creds"}],
                },
            }
        )
    inputs = {files[str(_absolute(i.path))] for i in task.inputs}
    placeholders: list[str] = []
    for output in task.outputs:
        file = files[str(_absolute(output.path))]
        if file not in inputs and file not in placeholders:
            placeholders += ["--create", file]
    sources = [
        f"{dispatch.input_flows.get(i.from_, dispatch.flow_id)}/{i.from_}"
        f"={files[str(_absolute(i.path))]}"
        for i in task.inputs
    ]
    expected = [
        f"--expect={dispatch.input_flows.get(d.name, dispatch.flow_id)}/{d.name}"
        f"={d.size}:{d.sha256}"
        for d in dispatch.input_digests
    ]
    download = ["download", *placeholders, *expected, *sources]
    init = [_helper(INPUTS_CONTAINER, download, plumbing)]
    if task.outputs:
        targets = [f"{o.name}={files[str(_absolute(o.path))]}={o.path}" for o in task.outputs]
        upload = ["upload", "--flow", dispatch.flow_id, *targets]
        init.append(container)
        spec["containers"] = [_helper(OUTPUTS_CONTAINER, upload, plumbing)]
    spec["initContainers"] = init


def pod_manifest(
    dispatch: Dispatch,
    namespace: str,
    plumbing: ArtifactPlumbing | None = None,
    run_as_non_root: bool = False,
    secret_refs: SecretRefs | None = None,
) -> Pod:
    """The pod that runs `dispatch`: named after the attempt, so creating it twice is a
    conflict, never a second run. `secret_refs` points `fromSecret` values at other Secrets
    than `secret_key_ref` would (the ones weir keeps in sync with its store)."""
    task = dispatch.task
    options = task.kubernetes or KubernetesOptions()
    metadata: dict[str, Any] = {
        "name": dispatch.attempt_id,
        "namespace": namespace,
        "labels": pod_labels(dispatch),
    }
    if options.annotations:
        metadata["annotations"] = dict(options.annotations)
    pod_security: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    non_root = options.run_as_non_root if options.run_as_non_root is not None else run_as_non_root
    if non_root:
        pod_security["runAsNonRoot"] = True
    if options.run_as_user is not None:
        pod_security["runAsUser"] = options.run_as_user
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": options.automount_service_account_token,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [_container(task, dispatch, secret_refs or {})],
    }
    if task.inputs or task.outputs:
        _with_artifacts(spec, dispatch, plumbing or ArtifactPlumbing())
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
