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
the Secret's data: never into the pod spec, logs or messages. While the executor runs,
`SecretSync` keeps those Secrets in step with the store: a removed secret's Secret is
deleted, a changed one's updated, and orphans left while no runner watched are reconciled
away when it starts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, assert_never

import msgspec
import nats.errors
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from weir.secrets import (
    SECRET_NAME,
    SecretError,
    SecretNotFound,
    SecretRemoved,
    SecretSet,
    SecretsStored,
    SecretStore,
)
from weir.supervisor import LOOP_DONE, Supervisor
from weir_proto.messages import Dispatch, ErrorType, OutputDigest

from weir_runner.artifacts import DataPlane
from weir_runner.executors.base import AttemptResult, OnStarted
from weir_runner.executors.kubernetes.api import KubeApiError, PodApi, load_client
from weir_runner.executors.kubernetes.manifest import (
    ATTEMPT_LABEL,
    FLOW_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POD_SELECTOR,
    SECRET_DEFAULT_KEY,
    SYNCED_SECRET_ANNOTATION,
    TASK_LABEL,
    ArtifactPlumbing,
    Pod,
    pod_manifest,
    secret_key_ref,
    synced_secret_name,
)
from weir_runner.executors.kubernetes.policy import PodPolicy
from weir_runner.executors.kubernetes.verdict import (
    Finished,
    Pending,
    Running,
    Stuck,
    Verdict,
    Waiting,
    judge,
    stuck_message,
)
from weir_runner.executors.kubernetes.watcher import WATCH_TIMEOUT_DEFAULT, PodChannel, PodWatcher

if TYPE_CHECKING:
    from weir.config import Settings

log = logging.getLogger("weir.runner.kubernetes")

REAP_GRACE_SECONDS = 5.0
"""How long a stopping runner waits for the deletion of its finished pods."""

T = TypeVar("T")
Wanted = Callable[[str, str, int], Awaitable[tuple[bool, str] | None]]
"""(flow, task, attempt) -> whether the scheduler still wants it and why not; None: no
answer."""

NAMESPACE_DEFAULT = "default"
IMAGE_PULL_TIMEOUT_DEFAULT = 120.0
UNSCHEDULABLE_TIMEOUT_DEFAULT = 300.0
POD_TTL_DEFAULT = 0.0
POD_RESYNC_DEFAULT = 60.0
ORPHAN_SWEEP_DEFAULT = 60.0
"""The watch is the news, but a watch can miss an event (a server that does not replay
what happened while the stream was down, a proxy that drops it): after this long without
news an attempt reads its pod directly, as informers resync."""
LOG_LIMIT_BYTES = 1024 * 1024
"""Most of a pod's log kept in stdout.log: the end of it, after a truncation marker."""
LOG_LIVE_LIMIT_BYTES = 16 * 1024 * 1024
"""The first this many bytes of a pod's log are written to stdout.log as they come (and
shipped live); after that only the last `LOG_LIMIT_BYTES` are kept."""
LOG_FOLLOW_GRACE = 10.0
"""Seconds the log stream may take to end after the pod finished before the rest of the
log is read in one go instead."""
LOG_CAPTURE_TIMEOUT = 60.0
FAILURE_TAIL_BYTES = 2048
"""How much of the log's end a failure message carries (as the local executor does)."""
RETRY_DELAY_MIN = 0.1
RETRY_DELAY_MAX = 5.0
DELETE_ATTEMPTS = 5
SECRET_RESYNC_INTERVAL = 300.0
"""Seconds one watch of the secret store lasts before the next reconciles again: a safety
net for changes a silently broken watch would have missed."""
SECRET_SYNC_RETRY_MAX = 30.0
"""Longest wait before the secret sync starts over after a failure (backoff from
`RETRY_DELAY_MIN`)."""
BACKGROUND_LOOPS = ("pod-watch", "secret-sync", "orphan-sweep")
"""The executor's supervised loops (see `KubernetesExecutor.loops`)."""
SYNCED_SECRET_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
"""Lists the Secrets the secret sync may own; only those with `SYNCED_SECRET_ANNOTATION`
(and the name `synced_secret_name` gives it) are."""


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
    policy: PodPolicy = field(default_factory=PodPolicy)
    """What a task's `kubernetes` section and `fromSecret` may ask for (allow-lists, floor)."""
    pod_resync: float = POD_RESYNC_DEFAULT
    """Seconds an attempt waits without news from the watch before reading its pod itself."""
    orphan_sweep: float = ORPHAN_SWEEP_DEFAULT
    """Seconds between two looks for running pods no attempt follows (see `_sweep_orphans`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesConfig:
        return cls(
            runner_dir=Path(settings.runner_dir),
            namespace=settings.kube_namespace,
            run_as_non_root=settings.kube_run_as_non_root,
            policy=PodPolicy.from_settings(settings),
            kubeconfig=settings.kube_config,
            image_pull_timeout=settings.kube_image_pull_timeout,
            unschedulable_timeout=settings.kube_unschedulable_timeout,
            pod_ttl=settings.kube_pod_ttl,
            artifacts=ArtifactPlumbing(
                helper_image=settings.kube_helper_image,
                bucket=settings.artifacts_bucket,
                credentials_secret=settings.kube_data_secret,
                artifacts_url=settings.artifacts_url,
                s3_endpoint_url=settings.s3_endpoint_url,
                s3_region=settings.s3_region,
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
    outputs: tuple[OutputDigest, ...] = ()


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
        self.secret_sync: SecretSync | None = None
        self.loops = Supervisor("kubernetes-executor")
        """Runs `pod-watch`, `secret-sync` and `orphan-sweep`: the runner's own supervisor
        once `supervise_with` gave it, so they show in its health and can stop it."""
        self._starter: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._reapers: set[asyncio.Task[None]] = set()
        self._wanted: Wanted | None = None
        self._suspects: set[str] = set()
        """Running pods the last orphan sweep saw unfollowed."""
        self.orphans_deleted = 0

    # -- lifecycle ---------------------------------------------------------------------

    def attach(self, js: JetStreamContext) -> None:
        """Read weir's secret store over the worker's NATS connection, and start now (in the
        background), so synced Secrets follow the store from the runner's start on."""
        if self.data is None:
            self.data = DataPlane("", self.config.artifacts.bucket)  # never connects itself
        self.data.attach(js)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop yet: `run` starts at the first attempt
        if self._starter is None or self._starter.done():
            self._starter = asyncio.create_task(self._start_in_background(), name="kube-start")

    def supervise_with(self, loops: Supervisor) -> None:
        """Run the executor's background loops under `loops` (the runner's supervisor)."""
        self.loops = loops

    def ask_with(self, wanted: Wanted) -> None:
        """How to ask the scheduler whether an attempt is still wanted: with it, running pods
        no runner follows any more are found and deleted when their attempt is not."""
        self._wanted = wanted

    async def start(self) -> PodWatcher:
        """Connect, start the pod watch, and, with a secret store to read, the secret sync;
        `attach` and `run` do this. The sync holds a NATS session for as long as it runs."""
        async with self._starting:
            if self.watcher is None:
                api_client = await load_client(self.config.kubeconfig)
                self.api = PodApi(api_client, self.config.namespace)
                self.watcher = PodWatcher(self.api, POD_SELECTOR, self.config.watch_timeout)
                self.loops.start("pod-watch", self.watcher.run_once)
                self.secret_sync = SecretSync(self.api)
            if self._wanted is not None and not self.loops.running("orphan-sweep"):
                self.loops.start("orphan-sweep", partial(self._sweep_orphans, self._wanted))
            if self.data is not None and not self.loops.running("secret-sync"):
                assert self.secret_sync is not None
                self.loops.start("secret-sync", partial(self.secret_sync.run_once, self.data))
            return self.watcher

    async def _start_in_background(self) -> None:
        try:
            await self.start()
        except Exception as exc:  # a bad kubeconfig: the first attempt reports it
            log.warning("kubernetes executor did not start", extra={"error": str(exc)})

    async def close(self) -> None:
        """Stop the watch, the secret sync and pending pod deletions (pods being followed
        are left alone; deletions under way get a few seconds to finish)."""
        if self._reapers:
            await asyncio.wait(list(self._reapers), timeout=REAP_GRACE_SECONDS)
        tasks = [t for t in (self._starter, *self._reapers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.loops.stop(*BACKGROUND_LOOPS)
        if self.api is not None:
            await self.api.close()
        self.api = self.watcher = self.secret_sync = None
        self._starter = None

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
            return AttemptResult(
                recorded.exit_code, recorded.error_type, recorded.message, outputs=recorded.outputs
            )
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
            msgspec.json.encode(
                _Recorded(result.exit_code, result.error_type, result.message, result.outputs)
            )
        )
        os.replace(tmp, result_file)
        return result

    async def _follow(
        self, dispatch: Dispatch, channel: PodChannel, on_started: OnStarted, home: Path
    ) -> AttemptResult:
        task_name = dispatch.task.name
        try:
            refused = self.config.policy.refusals(dispatch.task)
            if refused:  # before anything exists: no pod, no synced Secret
                return AttemptResult(None, ErrorType.REFUSED, "; ".join(refused))
            refs, problem, error_type = await self._secret_refs(dispatch)
            if problem is not None and not await self._exists(dispatch.attempt_id):
                return AttemptResult(None, error_type, problem)
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
        home.mkdir(parents=True, exist_ok=True)
        capture = _LogCapture(home / "stdout.log")
        capturing = asyncio.create_task(
            self._capture_logs(dispatch.attempt_id, task_name, channel, capture),
            name=f"logs-{dispatch.attempt_id}",
        )
        try:
            finished = await self._until_finished(task_name, channel, on_started)
        except BaseException:
            capturing.cancel()
            await asyncio.gather(capturing, return_exceptions=True)
            capture.close("")
            raise
        log_bytes = await self._end_logs(
            dispatch.attempt_id, capturing, capture, finished.ran and not channel.deleted
        )
        if not channel.deleted:
            await self._dispose(dispatch.attempt_id)
        if finished.error_type is None:
            return AttemptResult(finished.exit_code, outputs=finished.outputs)
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
            wait = (
                self.config.pod_resync if timeout is None else min(timeout, self.config.pod_resync)
            )
            if await channel.wait_newer(seen, wait) == seen and await self._confirm_gone(channel):
                channel.gone(None)  # nothing heard, and the pod is no more

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
            ref, problem, error_type = await self._secret_ref(source)
            if ref is None:
                problem = f'task "{dispatch.task.name}": env {var.name} wants {problem}'
                return refs, problem, error_type
            refs[source] = ref
        return refs, None, ErrorType.SECRET

    async def _secret_ref(self, source: str) -> tuple[dict[str, str] | None, str, ErrorType]:
        namespace = self.config.namespace
        store_problem = ""
        if self.data is not None and SECRET_NAME.match(source):
            try:
                async with self.data.session() as js:
                    ref = await self._secret_sync().ensure(self.data.secrets(js), source)
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
            except _SecretTaken as exc:
                return None, f'secret "{source}": {exc}', ErrorType.SECRET
        ref = secret_key_ref(source)
        if ref["name"] not in self.config.policy.secrets:  # not weir's: only if allowed
            allowed = ", ".join(sorted(self.config.policy.secrets)) or "none allowed"
            name = ref["name"]
            return (
                None,
                f'secret "{source}", which does not exist in weir\'s secret store (store it with '
                f'`weir secret set {source}`); reading Kubernetes Secret "{name}" directly is '
                f"not allowed by this runner (WEIR_KUBE_ALLOWED_SECRETS: {allowed})",
                ErrorType.SECRET,
            )
        try:
            found = await _retrying(lambda: self._api().get_secret(ref["name"]))
        except KubeApiError as exc:
            if exc.status == 403:  # not allowed to look: the kubelet will tell
                log.warning(
                    "cannot check a Secret", extra={"secret": ref["name"], "error": str(exc)}
                )
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

    async def _exists(self, name: str) -> bool:
        """Whether the attempt's pod exists already (a redelivered dispatch follows it)."""
        try:
            return await _retrying(lambda: self._api().get(name)) is not None
        except KubeApiError:
            return False

    async def _confirm_gone(self, channel: PodChannel) -> bool:
        """Read the pod directly (a relist missed it, or the watch has been quiet): True if
        it is gone, else its state is offered to the channel."""
        delay = RETRY_DELAY_MIN
        while True:
            version = channel.version
            try:
                pod = await self._api().get(channel.name)
            except KubeApiError as exc:
                log.warning("pod read failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX)
                continue
            if channel.version != version:
                return False  # the watch spoke meanwhile: its news is newer than this read
            if pod is None:
                return True
            channel.offer(pod)
            return False

    async def _capture_logs(
        self, name: str, task: str, channel: PodChannel, capture: _LogCapture
    ) -> None:
        """Follow the task container's log into stdout.log from the moment it runs (the
        worker's log shipper publishes it live). A broken stream is opened again and what
        was already received skipped; it ends when the container has."""
        seen = -1
        while True:
            seen = channel.version
            if channel.pod is not None and _container_ran(judge(channel.pod, task)):
                break
            await channel.wait_newer(seen, None)
        delay = RETRY_DELAY_MIN
        while True:
            try:
                await capture.read(self._api().logs(name, follow=True))
            except KubeApiError as exc:
                if exc.status == 404 or (not exc.transient and exc.status != 400):
                    return  # the pod is gone; what was received is kept
                log.debug("pod log stream broke; again", extra={"pod": name, "error": str(exc)})
            else:
                pod = channel.pod
                if channel.deleted or (pod is not None and isinstance(judge(pod, task), Finished)):
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_DELAY_MAX)

    async def _end_logs(
        self, name: str, capturing: asyncio.Task[None], capture: _LogCapture, ran: bool
    ) -> bytes:
        """The log once the attempt is over: the live capture's end, else the rest read in
        one go (skipping what was received); returns the end of the log."""
        problem = ""
        if ran:
            done, _ = await asyncio.wait({capturing}, timeout=LOG_FOLLOW_GRACE)
            if not done:
                capturing.cancel()
                await asyncio.gather(capturing, return_exceptions=True)
                problem = await self._read_rest(name, capture)
        else:
            capturing.cancel()
            await asyncio.gather(capturing, return_exceptions=True)
        if problem:
            log.warning("pod log not captured", extra={"pod": name, "error": problem})
        return capture.close(problem)

    async def _read_rest(self, name: str, capture: _LogCapture) -> str:
        """Read the whole log again and keep what the live capture missed; why not, if not."""
        delay = RETRY_DELAY_MIN
        try:
            async with asyncio.timeout(LOG_CAPTURE_TIMEOUT):
                while True:
                    try:
                        await capture.read(self._api().logs(name))
                        return ""
                    except KubeApiError as exc:
                        if not exc.transient:
                            return str(exc)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, RETRY_DELAY_MAX)
        except TimeoutError:
            return f"log capture took longer than {LOG_CAPTURE_TIMEOUT:g}s"

    async def _sweep_orphans(self, wanted: Wanted) -> None:
        """One round of the supervised `orphan-sweep` loop: wait `orphan_sweep` seconds,
        then delete running pods that no attempt follows and whose attempt is not wanted: a
        runner killed while the flow was cancelled (its dispatch purged, so never handed
        out again), or an attempt declared lost and retried meanwhile. A pod must be seen
        unfollowed by two sweeps in a row, so a redelivered dispatch has time to adopt it;
        pods of other runners are left alone, since the scheduler still wants them. Finished
        pods are not touched (their runner may keep them for `pod_ttl`). An API server that
        is unreachable is tried again at the next round; other errors are the supervisor's."""
        await asyncio.sleep(self.config.orphan_sweep)
        watcher = self.watcher
        if watcher is None:
            return
        try:
            listing = await self._api().list(POD_SELECTOR)
        except KubeApiError as exc:
            if not exc.transient:
                raise
            log.warning("orphan sweep could not list pods", extra={"error": str(exc)})
            return
        unfollowed: dict[str, dict[str, str]] = {}
        for pod in listing.get("items") or []:
            meta = pod.get("metadata") or {}
            phase = (pod.get("status") or {}).get("phase")
            name = meta.get("name", "")
            if name in watcher.channels or phase in ("Succeeded", "Failed"):
                continue
            if meta.get("deletionTimestamp"):
                continue
            unfollowed[name] = meta.get("labels") or {}
        for name in sorted(self._suspects & unfollowed.keys()):
            labels = unfollowed[name]
            attempt = labels.get(ATTEMPT_LABEL, "")
            if not attempt.isdigit() or name in watcher.channels:
                continue
            answer = await wanted(
                labels.get(FLOW_LABEL, ""), labels.get(TASK_LABEL, ""), int(attempt)
            )
            if answer is None or answer[0] or name in watcher.channels:
                continue
            log.info("deleting orphaned pod", extra={"pod": name, "reason": answer[1]})
            await self._delete(name)
            self.orphans_deleted += 1
        self._suspects = set(unfollowed)

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

    def _secret_sync(self) -> SecretSync:
        assert self.secret_sync is not None, "start() first"
        return self.secret_sync


# -- secret sync ---------------------------------------------------------------------


class _SecretTaken(Exception):
    """The synced Secret's name is taken by a Secret weir did not create."""


class SecretAction(enum.Enum):
    """What the sync does to a Secret weir copied a stored secret into."""

    KEEP = "keep"
    """It holds the stored value."""
    UPDATE = "update"
    """The stored value changed: the Secret gets the new one."""
    DELETE = "delete"
    """The secret was removed from the store: its value must not linger in the cluster."""


def synced_from(secret: Mapping[str, Any]) -> str | None:
    """The stored secret `secret` holds, when weir synced it: it has weir's managed-by label,
    `SYNCED_SECRET_ANNOTATION` naming the secret, and the name weir gives that secret's
    Secret. None for any other Secret, which the sync never touches."""
    meta = secret.get("metadata") or {}
    if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    name = (meta.get("annotations") or {}).get(SYNCED_SECRET_ANNOTATION)
    if not isinstance(name, str) or meta.get("name") != synced_secret_name(name):
        return None
    return name


def secret_action(secret: Mapping[str, Any], value: bytes | None) -> SecretAction:
    """For a Secret weir synced, and its secret's value in the store now (None: removed)."""
    if value is None:
        return SecretAction.DELETE
    if (secret.get("data") or {}).get(SECRET_DEFAULT_KEY) == _encoded(value):
        return SecretAction.KEEP
    return SecretAction.UPDATE


class SecretSync:
    """Keeps the Secrets `weir-secret-<name>` in step with weir's secret store.

    `ensure` copies a secret into its Secret before a pod that needs it starts. `run` follows
    the store while the executor runs, one pass after another: a pass starts a watch of the
    store, reconciles once the watch is up (each Secret weir synced is checked against the
    store: deleted if its secret is gone, updated if the value changed), then checks each
    secret the watch reports set or removed. A set secret updates its Secret only if there
    is one: Secrets are made for pods, not for every stored secret. A pass ends after
    `SECRET_RESYNC_INTERVAL`, or on an error, which is logged and followed by a new pass
    after a backoff. Secrets weir did not sync (`synced_from` is None) are never touched.
    """

    def __init__(self, api: PodApi) -> None:
        self.api = api
        self.reconciles = 0
        """Reconciliations done so far: tests wait on it."""
        self._delay = RETRY_DELAY_MIN
        """Back-off while the secret store cannot be read."""
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        """Held while secret `name` is read from the store and written to its Secret: a pod's
        copy and the watch's check then apply in the order they read the store, and the one
        that read last wins."""
        return self._locks.setdefault(name, asyncio.Lock())

    async def ensure(self, store: SecretStore, name: str) -> dict[str, str]:
        """Create or update the Secret holding stored secret `name`; its `secretKeyRef`.
        Raises `SecretNotFound` (and other `SecretError`s) from the store, `_SecretTaken`, and
        `KubeApiError`s whose messages never hold the value."""
        secret_name = synced_secret_name(name)
        async with self._lock(name):
            value = await store.get(name)
            try:
                while True:
                    existing = await _retrying(partial(self.api.get_secret, secret_name))
                    if existing is None:
                        if await self._create(name, value):
                            break
                        continue  # created meanwhile (by another runner): check it again
                    if not _managed(existing):
                        raise _SecretTaken(
                            f'a Secret named "{secret_name}" already exists in namespace '
                            f'"{self.api.namespace}" and weir did not create it'
                        )
                    current = synced_from(existing) == name
                    if current and secret_action(existing, value) is SecretAction.KEEP:
                        break
                    if await self._update(name, value):
                        break
                    # deleted since it was read: create it again
            except KubeApiError as exc:
                raise KubeApiError(exc.status, _scrubbed(exc.message, value)) from None
        return {"name": secret_name, "key": SECRET_DEFAULT_KEY}

    async def run_once(self, data: DataPlane) -> object:
        """One pass, a round of the supervised `secret-sync` loop. While NATS is unreachable
        the pass waits and starts over here (with back-off, reset once a pass reconciled);
        other errors (a Secret refused by the API server, ...) are the supervisor's. The
        loop ends (`LOOP_DONE`) once the NATS connection it reads the store through is
        closed (a runner stopping)."""
        reconciles = self.reconciles
        resync = asyncio.timeout(SECRET_RESYNC_INTERVAL)
        try:
            async with data.session() as js, resync:
                await self._follow(data, js)
            problem = "the watch of the secret store ended"
        except ConnectionClosedError:
            log.info("NATS connection closed: synced Secrets no longer follow the store")
            return LOOP_DONE
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            if resync.expired():
                self._delay = RETRY_DELAY_MIN
                return None
            problem = f"{type(exc).__name__}: {exc}"
        if self.reconciles > reconciles:
            self._delay = RETRY_DELAY_MIN
        log.warning(
            "secret sync failed; starting over",
            extra={"error": problem, "retry_in": self._delay},
        )
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, SECRET_SYNC_RETRY_MAX)
        return None

    async def _follow(self, data: DataPlane, js: JetStreamContext) -> None:
        # A store for each check, not one for the pass: the key is read at each use.
        async with contextlib.aclosing(data.secrets(js).watch()) as changes:
            async for change in changes:
                match change:
                    case SecretsStored():
                        await self._reconcile(data, js)
                    case SecretSet(name=name) | SecretRemoved(name=name):
                        await self._check(data.secrets(js), name)
                    case _ as unreachable:
                        assert_never(unreachable)

    async def _reconcile(self, data: DataPlane, js: JetStreamContext) -> None:
        """Check every Secret weir synced: those of secrets removed while no runner watched
        are deleted, those of secrets changed meanwhile updated."""
        listed = await _retrying(partial(self.api.list_secrets, SYNCED_SECRET_SELECTOR))
        names = sorted({name for secret in listed if (name := synced_from(secret)) is not None})
        for name in names:
            await self._check(data.secrets(js), name)
        self.reconciles += 1
        log.info("synced Secrets reconciled with the secret store", extra={"secrets": len(names)})

    async def _check(self, store: SecretStore, name: str) -> None:
        """Bring the Secret of stored secret `name`, if weir synced one, in line with the
        store as it is now (not as an event said it was)."""
        secret_name = synced_secret_name(name)
        async with self._lock(name):
            secret = await _retrying(partial(self.api.get_secret, secret_name))
            if secret is None or synced_from(secret) != name:
                return  # no copy to keep in step, or not weir's
            try:
                value: bytes | None = await store.get(name)
            except SecretNotFound:
                value = None
            except SecretError as exc:  # stored, but unreadable here (no key, another key)
                log.warning(
                    "stored secret unreadable; its Secret is left as it is",
                    extra={"secret": name, "error": str(exc)},
                )
                return
            action = secret_action(secret, value)
            match action:
                case SecretAction.KEEP:
                    pass
                case SecretAction.UPDATE:
                    assert value is not None
                    try:
                        await self._update(name, value)
                    except KubeApiError as exc:
                        raise KubeApiError(exc.status, _scrubbed(exc.message, value)) from None
                case SecretAction.DELETE:
                    await self._delete(secret)
                case _ as unreachable:
                    assert_never(unreachable)

    async def _create(self, name: str, value: bytes) -> bool:
        """False when a Secret of that name exists already."""
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": synced_secret_name(name), **_synced_metadata(name)},
            "type": "Opaque",
            "data": {SECRET_DEFAULT_KEY: _encoded(value)},
        }
        try:
            await _retrying(partial(self.api.create_secret, secret), value)
        except KubeApiError as exc:
            if exc.status == 409:
                return False
            raise
        log.info("created Secret", extra={"secret": synced_secret_name(name)})
        return True

    async def _update(self, name: str, value: bytes) -> bool:
        """False when the Secret is gone."""
        secret_name = synced_secret_name(name)
        patch = {"metadata": _synced_metadata(name), "data": {SECRET_DEFAULT_KEY: _encoded(value)}}
        try:
            await _retrying(partial(self.api.patch_secret, secret_name, patch), value)
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        log.info("updated Secret", extra={"secret": secret_name})
        return True

    async def _delete(self, secret: Mapping[str, Any]) -> None:
        meta = secret.get("metadata") or {}
        try:
            await _retrying(
                partial(
                    self.api.delete_secret,
                    meta["name"],
                    meta.get("uid"),
                    meta.get("resourceVersion"),
                )
            )
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            # Changed since it was read (by `set` through another runner, or replaced): the
            # preconditions failed and the next check decides.
            log.info("Secret replaced before its deletion", extra={"secret": meta["name"]})
            return
        log.info("deleted Secret of a removed secret", extra={"secret": meta["name"]})


def _synced_metadata(name: str) -> dict[str, Any]:
    return {
        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        "annotations": {SYNCED_SECRET_ANNOTATION: name},
    }


def _managed(secret: Mapping[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY)


def _encoded(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def _retrying(call: Callable[[], Awaitable[T]], secret: bytes | None = None) -> T:
    """`call()`, again after transient API errors; others are raised. With `secret` (the
    value the call writes), the errors logged meanwhile never hold it."""
    delay = RETRY_DELAY_MIN
    while True:
        try:
            return await call()
        except KubeApiError as exc:
            if not exc.transient:
                raise
            error = str(exc) if secret is None else _scrubbed(str(exc), secret)
            log.warning("Kubernetes API call failed; retrying", extra={"error": error})
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_DELAY_MAX)


def _scrubbed(message: str, value: bytes) -> str:
    """`message` without `value` in it, as text or base64 (API errors may quote a body)."""
    for form in (value.decode(errors="replace"), base64.b64encode(value).decode()):
        if form.strip():
            message = message.replace(form, "[redacted]")
    return message


class _LogCapture:
    """stdout.log of a pod's attempt: the container's log as received, the first
    `LOG_LIVE_LIMIT_BYTES` written at once (and so shipped live), after that only its last
    `LOG_LIMIT_BYTES` kept, written with a marker at the end. A runner that adopts the
    attempt continues the file: the bytes already there are not written twice."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "ab")  # noqa: SIM115 - closed by close()
        self.received = self.file.tell()
        """Bytes of the container's log received so far (by any runner of this attempt)."""
        self.tail = bytearray()
        self.dropped = 0
        self.closed = False

    async def read(self, chunks: AsyncIterator[bytes]) -> None:
        """Take a stream of the log from its start, keeping only what is new."""
        position = 0
        async for chunk in chunks:
            new = chunk[max(0, self.received - position) :]
            position += len(chunk)
            if new:
                self._keep(new)

    def _keep(self, data: bytes) -> None:
        self.received += len(data)
        room = max(0, LOG_LIVE_LIMIT_BYTES - self.file.tell())
        if room and not self.tail:
            self.file.write(data[:room])
            self.file.flush()
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > LOG_LIMIT_BYTES:
                self.dropped += len(self.tail) - LOG_LIMIT_BYTES
                del self.tail[: len(self.tail) - LOG_LIMIT_BYTES]

    def close(self, problem: str) -> bytes:
        """Write the kept end and a note of what is missing; return the log's last bytes."""
        if self.closed:
            return b""
        self.closed = True
        if self.dropped:
            self.file.write(f"\n[weir: log truncated, {self.dropped} bytes dropped]\n".encode())
        self.file.write(self.tail)
        if problem:
            self.file.write(f"\n[weir: log incomplete: {problem}]\n".encode())
        self.file.close()
        with open(self.file.name, "rb") as written:
            written.seek(max(0, os.path.getsize(self.file.name) - FAILURE_TAIL_BYTES - 1))
            return written.read()


def _container_ran(verdict: Verdict) -> bool:
    return isinstance(verdict, Running) or (isinstance(verdict, Finished) and verdict.ran)


def _with_tail(head: str, log_bytes: bytes) -> str:
    tail = log_bytes[-FAILURE_TAIL_BYTES:].decode(errors="replace").strip()
    if not tail:
        return head
    marker = "…" if len(log_bytes) > FAILURE_TAIL_BYTES else ""
    return f"{head}; output ends: {marker}{tail}"
