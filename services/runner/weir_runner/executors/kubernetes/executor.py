"""KubernetesExecutor: runs each attempt as a pod named after the attempt.

Creating the pod twice is a conflict, and a conflict adopts the pod that exists, so a
redelivered dispatch (runner restarted mid-flow) follows the pod it had started instead of
running the task again. State comes from the runner's one shared watch (`PodWatcher`),
never from polling. After the pod ends, its log is saved to
`<runner_dir>/<attempt_id>/stdout.log` (the last `LOG_LIMIT_BYTES`), then the pod is
deleted. Cancelling `run` deletes the pod.

Before the pod is created, each `fromSecret: NAME` found in weir's secret store is copied
into the Kubernetes Secret `weir-secret-<NAME>` (key `value`), which the pod references; a
NAME not in the store, or `NAME/KEY`, must be an existing Secret (and key) of the namespace.
A secret found nowhere fails the attempt before anything runs. Decrypted values go only into
the Secret's data: never into the pod spec, logs or messages.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from nats.js import JetStreamContext
from weir.secrets import SECRET_NAME, SecretError, SecretNotFound
from weir_proto.messages import Dispatch, ErrorType

from weir_runner.artifacts import DataPlane
from weir_runner.executors.base import AttemptResult, OnStarted
from weir_runner.executors.kubernetes.api import KubeApiError, PodApi, load_client
from weir_runner.executors.kubernetes.manifest import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POD_SELECTOR,
    SECRET_DEFAULT_KEY,
    SYNCED_SECRET_ANNOTATION,
    ArtifactPlumbing,
    Pod,
    pod_manifest,
    secret_key_ref,
    synced_secret_name,
)
from weir_runner.executors.kubernetes.verdict import (
    Finished,
    Pending,
    Running,
    Stuck,
    Waiting,
    judge,
    stuck_message,
)
from weir_runner.executors.kubernetes.watcher import WATCH_TIMEOUT_DEFAULT, PodChannel, PodWatcher

if TYPE_CHECKING:
    from weir.config import Settings

log = logging.getLogger("weir.runner.kubernetes")

T = TypeVar("T")

NAMESPACE_DEFAULT = "default"
IMAGE_PULL_TIMEOUT_DEFAULT = 120.0
UNSCHEDULABLE_TIMEOUT_DEFAULT = 300.0
POD_TTL_DEFAULT = 0.0
LOG_LIMIT_BYTES = 1024 * 1024
"""Most of a pod's log kept in stdout.log: the end of it, after a truncation marker."""
LOG_CAPTURE_TIMEOUT = 60.0
FAILURE_TAIL_BYTES = 2048
"""How much of the log's end a failure message carries (as the local executor does)."""
RETRY_DELAY_MIN = 0.1
RETRY_DELAY_MAX = 5.0
DELETE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    runner_dir: Path
    namespace: str = NAMESPACE_DEFAULT
    kubeconfig: str = ""
    """Kubeconfig file; empty: the pod's service account in a cluster, else ~/.kube/config."""
    image_pull_timeout: float = IMAGE_PULL_TIMEOUT_DEFAULT
    """Seconds a pod may fail to pull its image (or create its container) before it fails."""
    unschedulable_timeout: float = UNSCHEDULABLE_TIMEOUT_DEFAULT
    pod_ttl: float = POD_TTL_DEFAULT
    """Seconds a finished pod is kept after its logs were saved."""
    watch_timeout: int = WATCH_TIMEOUT_DEFAULT
    artifacts: ArtifactPlumbing = field(default_factory=ArtifactPlumbing)
    """How pods of tasks with inputs or outputs reach the artifacts bucket."""
    run_as_non_root: bool = False
    """Pods refuse to run as root unless a task says otherwise (WEIR_KUBE_RUN_AS_NON_ROOT)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesConfig:
        return cls(
            runner_dir=Path(settings.runner_dir),
            namespace=settings.kube_namespace,
            run_as_non_root=settings.kube_run_as_non_root,
            kubeconfig=settings.kube_config,
            image_pull_timeout=settings.kube_image_pull_timeout,
            unschedulable_timeout=settings.kube_unschedulable_timeout,
            pod_ttl=settings.kube_pod_ttl,
            artifacts=ArtifactPlumbing(
                helper_image=settings.kube_helper_image,
                bucket=settings.artifacts_bucket,
                credentials_secret=settings.kube_data_secret,
            ),
        )

    def stuck_limit(self, stuck: Stuck) -> float:
        match stuck:
            case Stuck.IMAGE_PULL | Stuck.CONTAINER_CONFIG:
                return self.image_pull_timeout
            case Stuck.UNSCHEDULABLE:
                return self.unschedulable_timeout


class _Recorded(msgspec.Struct):
    exit_code: int | None
    error_type: ErrorType | None
    message: str


class _Refused(Exception):
    """The API server refused the pod for good (invalid, forbidden, name taken)."""


class KubernetesExecutor:
    name = "kubernetes"

    def __init__(self, config: KubernetesConfig, data: DataPlane | None = None) -> None:
        """`data` (or the runner's connection, given to `attach`) reaches weir's secret store;
        without either, `fromSecret` names only existing Kubernetes Secrets."""
        self.config = config
        self.data = data
        self.root = config.runner_dir.resolve()
        self.api: PodApi | None = None
        self.watcher: PodWatcher | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._reapers: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    def attach(self, js: JetStreamContext) -> None:
        """Read weir's secret store over the worker's NATS connection."""
        if self.data is None:
            self.data = DataPlane("", self.config.artifacts.bucket)  # never connects itself
        self.data.attach(js)

    async def start(self) -> PodWatcher:
        """Connect and start the watch; `run` does this on first use."""
        async with self._starting:
            if self.watcher is None:
                api_client = await load_client(self.config.kubeconfig)
                self.api = PodApi(api_client, self.config.namespace)
                self.watcher = PodWatcher(self.api, POD_SELECTOR, self.config.watch_timeout)
                self._watch_task = asyncio.create_task(self.watcher.run(), name="pod-watch")
            return self.watcher

    async def close(self) -> None:
        """Stop the watch and pending pod deletions (pods being followed are left alone)."""
        tasks = [t for t in (self._watch_task, *self._reapers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.api is not None:
            await self.api.close()
        self.api = self.watcher = self._watch_task = None

    # -- one attempt -------------------------------------------------------------------

    def attempt_dir(self, attempt_id: str) -> Path:
        return self.root / attempt_id

    async def run(self, dispatch: Dispatch, on_started: OnStarted) -> AttemptResult:
        task = dispatch.task
        if not task.image:
            return AttemptResult(
                None,
                ErrorType.EXECUTOR,
                f'task "{task.name}" has no image: the kubernetes executor runs every task as '
                "a pod of its image; add `image:` to the task",
            )
        home = self.attempt_dir(dispatch.attempt_id)
        result_file = home / "result.json"
        if result_file.exists():
            recorded = msgspec.json.decode(result_file.read_bytes(), type=_Recorded)
            return AttemptResult(recorded.exit_code, recorded.error_type, recorded.message)
        watcher = await self.start()
        with watcher.tracking(dispatch.attempt_id) as channel:
            try:
                result = await self._follow(dispatch, channel, on_started, home)
            except asyncio.CancelledError:
                await asyncio.shield(self._delete(dispatch.attempt_id))
                raise
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / "result.json.tmp"
        tmp.write_bytes(
            msgspec.json.encode(_Recorded(result.exit_code, result.error_type, result.message))
        )
        os.replace(tmp, result_file)
        return result

    async def _follow(
        self, dispatch: Dispatch, channel: PodChannel, on_started: OnStarted, home: Path
    ) -> AttemptResult:
        task_name = dispatch.task.name
        try:
            refs, problem = await self._secret_refs(dispatch)
            if problem is not None and not await self._exists(dispatch.attempt_id):
                return AttemptResult(None, ErrorType.EXECUTOR, problem)
            await self._create_or_adopt(
                pod_manifest(
                    dispatch,
                    self.config.namespace,
                    self.config.artifacts,
                    run_as_non_root=self.config.run_as_non_root,
                    secret_refs=refs,
                ),
                channel,
            )
        except _Refused as exc:
            return AttemptResult(None, ErrorType.EXECUTOR, str(exc))
        finished = await self._until_finished(task_name, channel, on_started)
        log_bytes = b""
        if finished.ran and not channel.deleted:
            log_bytes = await self._save_logs(dispatch.attempt_id, home)
        else:
            home.mkdir(parents=True, exist_ok=True)
            (home / "stdout.log").write_bytes(b"")
        if not channel.deleted:
            await self._dispose(dispatch.attempt_id)
        if finished.error_type is None:
            return AttemptResult(finished.exit_code)
        return AttemptResult(
            finished.exit_code, finished.error_type, _with_tail(finished.message, log_bytes)
        )

    async def _until_finished(
        self, task_name: str, channel: PodChannel, on_started: OnStarted
    ) -> Finished:
        started = False
        stuck_since: dict[Stuck, float] = {}
        seen = -1
        while True:
            seen = channel.version
            if channel.maybe_gone and await self._confirm_gone(channel):
                channel.gone(None)
            pod = channel.pod
            assert pod is not None  # seeded by _create_or_adopt
            verdict = judge(pod, task_name)
            if channel.deleted and not isinstance(verdict, Finished):
                verdict = Finished(
                    None,
                    ErrorType.POD_DELETED,
                    f'pod "{channel.name}" of task "{task_name}" was deleted before it '
                    "finished (by a user, a controller or the cluster)",
                    ran=False,
                )
            timeout: float | None = None
            match verdict:
                case Finished():
                    if not started and verdict.ran:
                        await on_started()  # it ran, though we never saw it running
                    return verdict
                case Running():
                    stuck_since.clear()
                    if not started:
                        started = True
                        await on_started()
                case Waiting(stuck=stuck):
                    now = time.monotonic()
                    for other in [s for s in stuck_since if s is not stuck]:
                        del stuck_since[other]
                    since = stuck_since.setdefault(stuck, now)
                    limit = self.config.stuck_limit(stuck)
                    if now - since >= limit:
                        return stuck_message(verdict, pod, task_name, limit)
                    timeout = since + limit - now
                case Pending():
                    stuck_since.clear()
            await channel.wait_newer(seen, timeout)

    async def _create_or_adopt(self, manifest: Pod, channel: PodChannel) -> None:
        api = self._api()
        name = manifest["metadata"]["name"]
        delay = RETRY_DELAY_MIN
        while True:
            try:
                try:
                    channel.seed(await api.create(manifest))
                    return
                except KubeApiError as exc:
                    if exc.status != 409:
                        raise
                existing = await api.get(name)
                if existing is None:
                    continue  # deleted since the conflict: create it again
                labels = existing.get("metadata", {}).get("labels") or {}
                if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
                    raise _Refused(
                        f'a pod named "{name}" already exists in namespace '
                        f'"{self.config.namespace}" and weir did not create it'
                    )
                log.info("adopted existing pod", extra={"pod": name})
                channel.seed(existing)
                return
            except KubeApiError as exc:
                if not exc.transient:
                    raise _Refused(
                        f'pod "{name}" could not be created in namespace '
                        f'"{self.config.namespace}": {exc}'
                    ) from exc
                log.warning("pod create failed; retrying", extra={"pod": name, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX)

    # -- secrets -----------------------------------------------------------------------

    async def _secret_refs(
        self, dispatch: Dispatch
    ) -> tuple[dict[str, dict[str, str]], str | None]:
        """The `secretKeyRef` of each `fromSecret`, syncing stored secrets into Secrets; or
        why a variable cannot be set. Messages name secrets, never values."""
        refs: dict[str, dict[str, str]] = {}
        for var in dispatch.task.env:
            source = var.from_secret
            if source is None or source in refs:
                continue
            ref, problem = await self._secret_ref(source)
            if ref is None:
                return refs, f'task "{dispatch.task.name}": env {var.name} wants {problem}'
            refs[source] = ref
        return refs, None

    async def _secret_ref(self, source: str) -> tuple[dict[str, str] | None, str]:
        namespace = self.config.namespace
        store_problem = ""
        if self.data is not None and SECRET_NAME.match(source):
            try:
                async with self.data.session() as js:
                    value: bytes | None = await self.data.secrets(js).get(source)
            except SecretNotFound:
                value = None
            except SecretError as exc:
                value, store_problem = None, str(exc)
            if value is not None:
                try:
                    return await self._sync_secret(source, value), ""
                except KubeApiError as exc:
                    return None, (
                        f'secret "{source}", which could not be copied into Kubernetes Secret '
                        f'"{synced_secret_name(source)}" in namespace "{namespace}": '
                        f"{_scrubbed(str(exc), value)}"
                    )
                except _Refused as exc:
                    return None, f'secret "{source}": {exc}'
        ref = secret_key_ref(source)
        try:
            found = await self._retrying(lambda: self._api().get_secret(ref["name"]))
        except KubeApiError as exc:
            if exc.status == 403:  # not allowed to look: the kubelet will tell
                log.warning(
                    "cannot check a Secret", extra={"secret": ref["name"], "error": str(exc)}
                )
                return ref, ""
            return None, f'Kubernetes Secret "{ref["name"]}", which could not be read: {exc}'
        if found is not None and ref["key"] in (found.get("data") or {}):
            return ref, ""
        if store_problem:
            return None, f'secret "{source}": {store_problem}'
        if "/" in source:
            return None, (
                f'Kubernetes Secret "{ref["name"]}" key "{ref["key"]}", which does not exist in '
                f'namespace "{namespace}"'
            )
        return None, (
            f'secret "{source}", which does not exist: not in weir\'s secret store, and '
            f'Kubernetes secret "{ref["name"]}" key "{ref["key"]}" not found in namespace '
            f'"{namespace}" (store it with `weir secret set {source}`)'
        )

    async def _sync_secret(self, name: str, value: bytes) -> dict[str, str]:
        """Create or update the Secret holding stored secret `name`; its `secretKeyRef`."""
        api = self._api()
        secret_name = synced_secret_name(name)
        encoded = base64.b64encode(value).decode()
        metadata: dict[str, Any] = {
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {SYNCED_SECRET_ANNOTATION: name},
        }
        while True:
            existing = await self._retrying(lambda: api.get_secret(secret_name))
            if existing is None:
                secret = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": secret_name, **metadata},
                    "type": "Opaque",
                    "data": {SECRET_DEFAULT_KEY: encoded},
                }
                try:
                    await self._retrying(partial(api.create_secret, secret))
                except KubeApiError as exc:
                    if exc.status == 409:
                        continue  # created meanwhile (another attempt): check it again
                    raise
                log.info("created Secret", extra={"secret": secret_name})
                break
            meta = existing.get("metadata") or {}
            if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
                raise _Refused(
                    f'a Secret named "{secret_name}" already exists in namespace '
                    f'"{self.config.namespace}" and weir did not create it'
                )
            same = (existing.get("data") or {}).get(SECRET_DEFAULT_KEY) == encoded
            if same and (meta.get("annotations") or {}).get(SYNCED_SECRET_ANNOTATION) == name:
                break
            patch = {"metadata": metadata, "data": {SECRET_DEFAULT_KEY: encoded}}
            try:
                await self._retrying(partial(api.patch_secret, secret_name, patch))
            except KubeApiError as exc:
                if exc.status == 404:
                    continue  # deleted meanwhile: create it again
                raise
            log.info("updated Secret", extra={"secret": secret_name})
            break
        return {"name": secret_name, "key": SECRET_DEFAULT_KEY}

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, again after transient API errors; others are raised."""
        delay = RETRY_DELAY_MIN
        while True:
            try:
                return await call()
            except KubeApiError as exc:
                if not exc.transient:
                    raise
                log.warning("Kubernetes API call failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX)

    async def _exists(self, name: str) -> bool:
        """Whether the attempt's pod exists already (a redelivered dispatch follows it)."""
        try:
            return await self._retrying(lambda: self._api().get(name)) is not None
        except KubeApiError:
            return False

    async def _confirm_gone(self, channel: PodChannel) -> bool:
        """A relist missed the pod: ask for it directly before calling it deleted."""
        delay = RETRY_DELAY_MIN
        while True:
            try:
                pod = await self._api().get(channel.name)
            except KubeApiError as exc:
                log.warning("pod read failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX)
                continue
            if pod is None:
                return True
            channel.offer(pod)
            return False

    async def _save_logs(self, attempt_id: str, home: Path) -> bytes:
        """Keep the end of the container's log in stdout.log; return what was kept."""
        tail = bytearray()
        total = 0
        delay = RETRY_DELAY_MIN
        problem = ""
        try:
            async with asyncio.timeout(LOG_CAPTURE_TIMEOUT):
                while True:
                    tail.clear()
                    total = 0
                    try:
                        async for chunk in self._api().logs(attempt_id):
                            total += len(chunk)
                            tail += chunk
                            if len(tail) > LOG_LIMIT_BYTES:
                                del tail[: len(tail) - LOG_LIMIT_BYTES]
                        break
                    except KubeApiError as exc:
                        if not exc.transient:
                            problem = str(exc)
                            break
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, RETRY_DELAY_MAX)
        except TimeoutError:
            problem = f"log capture took longer than {LOG_CAPTURE_TIMEOUT:g}s"
        if problem:
            log.warning("pod log not captured", extra={"pod": attempt_id, "error": problem})
        kept = bytes(tail)
        home.mkdir(parents=True, exist_ok=True)
        with open(home / "stdout.log", "wb") as out:
            if total > len(kept):
                out.write(
                    f"[weir: log truncated, first {total - len(kept)} bytes dropped]\n".encode()
                )
            out.write(kept)
            if problem:
                out.write(f"\n[weir: log incomplete: {problem}]\n".encode())
        return kept

    async def _dispose(self, name: str) -> None:
        """Delete a finished pod now, or after the configured time to live."""
        if self.config.pod_ttl <= 0:
            await self._delete(name)
            return

        async def reap() -> None:
            await asyncio.sleep(self.config.pod_ttl)
            await self._delete(name)

        task = asyncio.create_task(reap(), name=f"reap-{name}")
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)

    async def _delete(self, name: str) -> None:
        delay = RETRY_DELAY_MIN
        for _ in range(DELETE_ATTEMPTS):
            try:
                await self._api().delete(name)
                return
            except KubeApiError as exc:
                log.warning("pod delete failed", extra={"pod": name, "error": str(exc)})
                if not exc.transient:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX)

    def _api(self) -> PodApi:
        assert self.api is not None, "start() first"
        return self.api


def _scrubbed(message: str, value: bytes) -> str:
    """`message` without `value` in it, as text or base64 (API errors may quote a body)."""
    for form in (value.decode(errors="replace"), base64.b64encode(value).decode()):
        if form.strip():
            message = message.replace(form, "[redacted]")
    return message


def _with_tail(head: str, log_bytes: bytes) -> str:
    tail = log_bytes[-FAILURE_TAIL_BYTES:].decode(errors="replace").strip()
    if not tail:
        return head
    marker = "…" if len(log_bytes) > FAILURE_TAIL_BYTES else ""
    return f"{head}; output ends: {marker}{tail}"
