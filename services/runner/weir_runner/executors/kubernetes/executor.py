"""KubernetesExecutor: runs each attempt as a pod named after the attempt.

Creating the pod twice is a conflict, and a conflict adopts the pod that exists, so a
redelivered dispatch (runner restarted mid-flow) follows the pod it had started instead of
running the task again. State comes from the runner's one shared watch (`PodWatcher`),
never from polling. After the pod ends, its log is saved to
`<runner_dir>/<attempt_id>/stdout.log` (the last `LOG_LIMIT_BYTES`; see `pod_logs`), then the
pod is deleted; `result.json` records how the attempt ended (`AttemptDir`). Cancelling `run`
deletes the pod.

Before the pod is created, each `fromSecret: NAME` found in weir's secret store is copied
into the Kubernetes Secret `weir-secret-<NAME>` (key `value`), which the pod references; a
NAME not in the store, or `NAME/KEY`, must be an existing Secret (and key) of the namespace.
A secret found nowhere fails the attempt before anything runs (`secret_refs`). Decrypted
values go only into the Secret's data: never into the pod spec, logs or messages. While the
executor runs, `SecretSync` (`secret_sync`) keeps those Secrets in step with the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from nats.js import JetStreamContext
from weir.config import (
    KUBE_IMAGE_PULL_TIMEOUT_DEFAULT,
    KUBE_NAMESPACE_DEFAULT,
    KUBE_POD_TTL_DEFAULT,
    KUBE_UNSCHEDULABLE_TIMEOUT_DEFAULT,
)
from weir.supervisor import Duty, Supervisor
from weir_proto.errors import WeirException
from weir_proto.messages import Dispatch, ErrorType

from weir_runner.artifacts import DataPlane
from weir_runner.attempt_dir import AttemptDir
from weir_runner.executors.base import AttemptResult, Executor, OnStarted, Wanted
from weir_runner.executors.kubernetes.api import (
    RETRY_DELAY_MAX,
    RETRY_DELAY_MIN,
    KubeApiError,
    PodApi,
    load_client,
    retrying,
)
from weir_runner.executors.kubernetes.manifest import (
    ATTEMPT_LABEL,
    FLOW_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POD_SELECTOR,
    TASK_LABEL,
    ArtifactPlumbing,
    Pod,
    pod_manifest,
    task_of_label,
)
from weir_runner.executors.kubernetes.pod_logs import LogCapture, PodLog, with_tail
from weir_runner.executors.kubernetes.policy import PodPolicy
from weir_runner.executors.kubernetes.secret_refs import secret_refs
from weir_runner.executors.kubernetes.secret_sync import SecretSync
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

REAP_GRACE_SECONDS = 5.0
"""How long a stopping runner waits for the deletion of its finished pods."""

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
DELETE_ATTEMPTS = 5
BACKGROUND_LOOPS = ("pod-watch", "secret-sync", "orphan-sweep")
"""The executor's supervised loops (see `KubernetesExecutor.loops`)."""


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    runner_dir: Path
    namespace: str = KUBE_NAMESPACE_DEFAULT
    kubeconfig: str = ""
    """Kubeconfig file; empty: the pod's service account in a cluster, else ~/.kube/config."""
    image_pull_timeout: float = KUBE_IMAGE_PULL_TIMEOUT_DEFAULT
    """Seconds a pod may fail to pull its image (or create its container) before it fails."""
    unschedulable_timeout: float = KUBE_UNSCHEDULABLE_TIMEOUT_DEFAULT
    pod_ttl: float = KUBE_POD_TTL_DEFAULT
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


class _Refused(WeirException):
    """The API server refused the pod for good (invalid, forbidden, name taken)."""


class KubernetesExecutor(Executor):
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
                self.loops.start(self.watcher)
                self.secret_sync = SecretSync(self.api)
            if self._wanted is not None and not self.loops.running("orphan-sweep"):
                self.loops.start(Duty("orphan-sweep", partial(self._sweep_orphans, self._wanted)))
            if self.data is not None and not self.loops.running("secret-sync"):
                assert self.secret_sync is not None
                sync = partial(self.secret_sync.run_once, self.data)
                self.loops.start(Duty("secret-sync", sync))
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

    def attempt_dir(self, attempt_id: str) -> AttemptDir:
        return AttemptDir.of(self.root, attempt_id)

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
        recorded = home.recorded()
        if recorded is not None:
            return recorded
        watcher = await self.start()
        with watcher.tracking(dispatch.attempt_id) as channel:
            try:
                result = await self._follow(dispatch, channel, on_started, home)
            except asyncio.CancelledError:
                await asyncio.shield(self._delete(dispatch.attempt_id))
                raise
        home.path.mkdir(parents=True, exist_ok=True)
        home.record(result)
        return result

    async def _follow(
        self, dispatch: Dispatch, channel: PodChannel, on_started: OnStarted, home: AttemptDir
    ) -> AttemptResult:
        task_name = dispatch.task.name
        try:
            refused = self.config.policy.refusals(dispatch.task)
            if refused:  # before anything exists: no pod, no synced Secret
                return AttemptResult(None, ErrorType.REFUSED, "; ".join(refused))
            refs, problem, error_type = await secret_refs(
                dispatch, self._api(), self._secret_sync(), self.data, self.config.policy.secrets
            )
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
        home.path.mkdir(parents=True, exist_ok=True)
        capture = LogCapture(home.stdout, LOG_LIVE_LIMIT_BYTES, LOG_LIMIT_BYTES)
        pod_log = PodLog(self._api(), channel, task_name, capture)
        pod_log.start()
        try:
            finished = await self._until_finished(task_name, channel, on_started)
        except BaseException:
            await pod_log.abandon()
            raise
        log_bytes = await pod_log.end(finished.ran and not channel.deleted)
        if not channel.deleted:
            await self._dispose(dispatch.attempt_id)
        if finished.error_type is None:
            return AttemptResult(finished.exit_code, outputs=finished.outputs)
        return AttemptResult(
            finished.exit_code, finished.error_type, with_tail(finished.message, log_bytes)
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

    async def _exists(self, name: str) -> bool:
        """Whether the attempt's pod exists already (a redelivered dispatch follows it)."""
        try:
            return await retrying(lambda: self._api().get(name)) is not None
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
                labels.get(FLOW_LABEL, ""), task_of_label(labels.get(TASK_LABEL, "")), int(attempt)
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
