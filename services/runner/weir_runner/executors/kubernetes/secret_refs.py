"""The `secretKeyRef` of each `fromSecret` of a task, before its pod is created.

`fromSecret: NAME` found in weir's secret store is copied into the Secret `weir-secret-<NAME>`
(by `SecretSync.ensure`); a NAME not in the store, or `NAME/KEY`, must be an existing Secret
(and key) of the namespace that this runner's policy allows (WEIR_KUBE_ALLOWED_SECRETS). A
secret found nowhere fails the attempt before anything runs. Messages name secrets, never
values.
"""

from __future__ import annotations

import logging
from collections.abc import Set
from functools import partial

from weir.secrets import SecretError, SecretNotFound
from weir_proto.ids import is_secret_name
from weir_proto.messages import Dispatch, ErrorType

from weir_runner.artifacts import DataPlane
from weir_runner.executors.kubernetes.api import KubeApiError, PodApi, retrying
from weir_runner.executors.kubernetes.manifest import secret_key_ref, synced_secret_name
from weir_runner.executors.kubernetes.secret_sync import SecretSync, SecretTaken

log = logging.getLogger("weir.runner.kubernetes")

Allowed = Set[str]
"""The Kubernetes Secrets a task may read directly (not through weir's store)."""


async def secret_refs(
    dispatch: Dispatch, api: PodApi, sync: SecretSync, data: DataPlane | None, allowed: Allowed
) -> tuple[dict[str, dict[str, str]], str | None, ErrorType]:
    """The `secretKeyRef` of each `fromSecret`, syncing stored secrets into Secrets; or
    why a variable cannot be set, and whether that is for good (`ErrorType.SECRET`) or a
    Kubernetes API failure another attempt may not meet. Messages name secrets, never
    values."""
    refs: dict[str, dict[str, str]] = {}
    for var in dispatch.task.env:
        source = var.from_secret
        if source is None or source in refs:
            continue
        ref, problem, error_type = await _secret_ref(source, api, sync, data, allowed)
        if ref is None:
            problem = f'task "{dispatch.task.name}": env {var.name} wants {problem}'
            return refs, problem, error_type
        refs[source] = ref
    return refs, None, ErrorType.SECRET


async def _secret_ref(
    source: str, api: PodApi, sync: SecretSync, data: DataPlane | None, allowed: Allowed
) -> tuple[dict[str, str] | None, str, ErrorType]:
    namespace = api.namespace
    store_problem = ""
    if data is not None and is_secret_name(source):
        try:
            async with data.session() as js:
                ref = await sync.ensure(data.secrets(js), source)
                return ref, "", ErrorType.SECRET
        except SecretNotFound:
            pass
        except SecretError as exc:
            store_problem = str(exc)
        except KubeApiError as exc:  # its message has no value in it: `ensure` saw to that
            return (
                None,
                f'secret "{source}", which could not be copied into Kubernetes Secret '
                f'"{synced_secret_name(source)}" in namespace "{namespace}": {exc}',
                ErrorType.EXECUTOR,
            )
        except SecretTaken as exc:
            return None, f'secret "{source}": {exc}', ErrorType.SECRET
    ref = secret_key_ref(source)
    if ref["name"] not in allowed:  # not weir's: only if allowed
        name = ref["name"]
        listed = ", ".join(sorted(allowed)) or "none allowed"
        return (
            None,
            f'secret "{source}", which does not exist in weir\'s secret store (store it with '
            f'`weir secret set {source}`); reading Kubernetes Secret "{name}" directly is '
            f"not allowed by this runner (WEIR_KUBE_ALLOWED_SECRETS: {listed})",
            ErrorType.SECRET,
        )
    try:
        found = await retrying(partial(api.get_secret, ref["name"]))
    except KubeApiError as exc:
        if exc.status == 403:  # not allowed to look: the kubelet will tell
            log.warning("cannot check a Secret", extra={"secret": ref["name"], "error": str(exc)})
            return ref, "", ErrorType.SECRET
        problem = f'Kubernetes Secret "{ref["name"]}", which could not be read: {exc}'
        return None, problem, ErrorType.EXECUTOR
    if found is not None and ref["key"] in (found.get("data") or {}):
        return ref, "", ErrorType.SECRET
    if store_problem:
        return None, f'secret "{source}": {store_problem}', ErrorType.SECRET
    if "/" in source:
        return (
            None,
            f'Kubernetes Secret "{ref["name"]}" key "{ref["key"]}", which does not exist in '
            f'namespace "{namespace}"',
            ErrorType.SECRET,
        )
    return (
        None,
        f'secret "{source}", which does not exist: not in weir\'s secret store, and '
        f'Kubernetes secret "{ref["name"]}" key "{ref["key"]}" not found in namespace '
        f'"{namespace}" (store it with `weir secret set {source}`)',
        ErrorType.SECRET,
    )
