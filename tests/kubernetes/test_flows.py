"""Flows run end to end on the fake cluster: scheduler, runner with the kubernetes executor,
kmock's API server and the test kubelet. Assertions are what a user sees."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from weir.client import Client
from weir.config import Settings
from weir_proto.events import TERMINAL_FLOW_EVENTS, TaskFailed, TaskSucceeded, event_type
from weir_runner.executors.kubernetes import KubernetesConfig, KubernetesExecutor
from weir_runner.executors.kubernetes.manifest import Pod, pod_manifest
from weir_runner.worker import Runner

from tests.conftest import Services, _start
from tests.flows import dispatch_of, reached, shell, task, waits_for
from tests.kubernetes.cluster import PODS, ApiServerProcess, TestKubelet
from tests.kubernetes.conftest import NAMESPACE
from tests.waiting import until

WAIT = 120.0
"""A bound on waiting for a flow or a pod, never a measure: every wait ends at the event it
waits for. A task's pod here starts up to three Python processes (the input helper, the task,
the output helper), a few seconds each on a loaded two-core machine, so the bound is wide."""
IMAGE = "debian:bookworm-slim"
ONCE = {"max_attempts": 1}
"""Failure cases run one attempt: the failure is the point, not the scheduler's retries."""


def pod_task(name: str, *cmd: str, **extra: Any) -> dict[str, Any]:
    return task(name, *cmd, image=IMAGE, **extra)


def pod_shell(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return shell(name, script, image=IMAGE, **extra)


@dataclass
class TaskOutcome:
    name: str
    status: str
    error_type: str | None = None
    error_message: str = ""
    exit_code: int | None = None


@dataclass
class FlowOutcome:
    """A flow as `weir events` shows it: how it ended, and how each task ended."""

    status: str
    tasks: list[TaskOutcome]


async def outcome(client: Client, flow_id: str) -> FlowOutcome:
    await asyncio.wait_for(client.wait(flow_id), WAIT)
    status, tasks = "running", {}
    async for event in client.events(flow_id):
        match event:
            case TaskSucceeded(task=name, exit_code=code):
                tasks[name] = TaskOutcome(name, "succeeded", exit_code=code)
            case TaskFailed(task=name, error_type=kind, message=message, exit_code=code):
                tasks[name] = TaskOutcome(name, "failed", kind, message, code)
            case _ if event_type(event) in TERMINAL_FLOW_EVENTS:
                status = event_type(event).removeprefix("flow_")
    return FlowOutcome(status, list(tasks.values()))


async def run_flow(client: Client, spec: dict[str, Any]) -> FlowOutcome:
    return await outcome(client, await client.submit(spec))


def tasks_of(view: FlowOutcome) -> dict[str, TaskOutcome]:
    return {t.name: t for t in view.tasks}


def assert_failed_as(failed: TaskOutcome, error_type: str, *says: str) -> None:
    """The task `failed` failed as `error_type`, its message saying each of `says`."""
    assert (failed.status, failed.error_type) == ("failed", error_type)
    for fragment in says:
        assert fragment in failed.error_message, failed.error_message


async def wait_started(kubelet: TestKubelet, pod: str) -> None:
    await asyncio.wait_for(kubelet.started_event(pod).wait(), WAIT)


async def start_sleeper(
    client: Client, kubelet: TestKubelet, flow_id: str, name: str, seconds: float = 30
) -> str:
    """Submit flow `flow_id` of one task `name` (one attempt) that sleeps in its pod for
    `seconds`, and wait until that pod runs; the pod's name."""
    sleep = pod_task(name, "sleep", str(seconds), retry=ONCE)
    spec = {"id": flow_id, "name": "sleeper", "tasks": [sleep]}
    await client.submit(spec)
    pod = f"{flow_id}-{name}-1"
    await wait_started(kubelet, pod)
    return pod


async def test_flow_runs_each_task_as_a_pod_saves_its_log_and_deletes_it(
    kube_client: Client, apiserver: ApiServerProcess, kube_settings: Settings
) -> None:
    spec = {
        "id": "pods-1",
        "name": "pods",
        "tasks": [
            pod_shell("hello", 'echo "hello from $WEIR_TASK"; echo to-stderr >&2'),
            pod_task("after", "true", depends=["hello"]),
        ],
    }
    view = await run_flow(kube_client, spec)

    assert view.status == "succeeded"
    assert {t.status for t in view.tasks} == {"succeeded"}
    log = Path(kube_settings.runner_dir, "pods-1-hello-1", "stdout.log").read_text()
    assert "hello from hello" in log and "to-stderr" in log
    created = apiserver.handler.pod_history(NAMESPACE, "pods-1-hello-1")[0]
    assert created["metadata"]["labels"]["weir.dev/task"] == "hello"
    assert created["spec"]["restartPolicy"] == "Never"
    for name in ("pods-1-hello-1", "pods-1-after-1"):
        assert apiserver.handler.pod(NAMESPACE, name) is None  # deleted once its log was saved


async def test_secret_reaches_the_container_by_reference_only(
    kube_client: Client, apiserver: ApiServerProcess, kube_settings: Settings
) -> None:
    apiserver.handler.put_secret(NAMESPACE, "db", {"password": "s3cret", "value": "plain"})
    spec = {
        "id": "secrets-1",
        "name": "secrets",
        "tasks": [
            pod_shell(
                "use",
                'echo "pw=$PW token=$TOKEN"',
                env=[
                    {"name": "PW", "fromSecret": "db/password"},
                    {"name": "TOKEN", "fromSecret": "db"},
                ],
            )
        ],
    }
    view = await run_flow(kube_client, spec)

    assert view.status == "succeeded"
    log = Path(kube_settings.runner_dir, "secrets-1-use-1", "stdout.log").read_text()
    assert "pw=s3cret token=plain" in log
    pod = apiserver.handler.pod_history(NAMESPACE, "secrets-1-use-1")[0]
    assert "s3cret" not in str(pod)


@dataclass(frozen=True)
class PodFailure:
    """A one-task flow whose pod cannot run it, and what its `task_failed` must say."""

    task: dict[str, Any]
    error_type: str
    says: tuple[str, ...]
    exit_code: int | None = None


POD_FAILURES = {
    "nonzero_exit_fails_task_with_code_and_end_of_log": PodFailure(
        pod_shell("extract", "echo 'disk on fire' >&2; exit 3", retry=ONCE),
        "exit_code",
        ('task "extract" exited with code 3', "disk on fire"),
        exit_code=3,
    ),
    "task_without_image_fails_with_a_clear_executor_error": PodFailure(
        task("bare", "true", retry=ONCE), "executor", ('task "bare" has no image',)
    ),
    "image_that_cannot_be_pulled_fails_after_the_pull_timeout": PodFailure(
        task("fetch", "true", image="does-not-exist:latest", retry=ONCE),
        "image_pull",
        ("'does-not-exist:latest' could not be pulled within 1s", "ImagePullBackOff"),
    ),
    "missing_secret_fails_instead_of_waiting_forever": PodFailure(
        pod_task("use", "true", env=[{"name": "PW", "fromSecret": "absent"}], retry=ONCE),
        "secret",
        (
            'secret "absent", which does not exist in weir\'s secret store',
            "(WEIR_KUBE_ALLOWED_SECRETS: db)",
        ),
    ),
    "out_of_memory_kill_is_reported_as_oom_killed": PodFailure(
        pod_shell(
            "hog",
            "echo allocating; kill -9 $$",  # what the kernel's OOM killer does
            kubernetes={"resources": {"limits": {"memory": "64Mi"}}},
            retry=ONCE,
        ),
        "oom_killed",
        ("OOMKilled", "allocating"),
        exit_code=137,
    ),
    "unschedulable_pod_fails_after_the_unschedulable_timeout": PodFailure(
        pod_task("gpu", "true", kubernetes={"nodeSelector": {"gpu": "h100"}}, retry=ONCE),
        "unschedulable",
        ("could not be scheduled within 1s", "didn't match Pod's node affinity/selector"),
    ),
    "task_timeout_becomes_the_pods_deadline": PodFailure(
        pod_task("nap", "sleep", "30", timeout=1, retry=ONCE),
        "timeout",
        ("timeout of 1s",),  # the pod deadline or the scheduler
    ),
}


@pytest.mark.parametrize("case", POD_FAILURES.values(), ids=POD_FAILURES.keys())
async def test_a_pod_that_cannot_run_fails_its_task_with_a_clear_error(
    kube_client: Client, case: PodFailure
) -> None:
    name = case.task["name"]
    view = await run_flow(kube_client, {"name": name, "tasks": [case.task]})

    failed = tasks_of(view)[name]
    assert view.status == "failed"
    assert_failed_as(failed, case.error_type, *case.says)
    if case.exit_code is not None:
        assert failed.exit_code == case.exit_code


async def evict(kubelet: TestKubelet, apiserver: ApiServerProcess, pod: str) -> None:
    await kubelet.evict(NAMESPACE, pod)


async def delete(kubelet: TestKubelet, apiserver: ApiServerProcess, pod: str) -> None:
    async with apiserver.handler.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}"):
        pass


@pytest.mark.parametrize(
    ("flow_id", "take_away", "error_type", "says"),
    [
        pytest.param(
            "evict-1",
            evict,
            "evicted",
            "The node was low on resource: memory.",
            id="evicted_pod_fails_its_task_as_evicted",
        ),
        pytest.param(
            "gone-1",
            delete,
            "pod_deleted",
            'pod "gone-1-victim-1" of task "victim" was deleted',
            id="pod_deleted_underneath_fails_its_task_as_pod_deleted",
            marks=pytest.mark.timeout(45),
        ),
    ],
)
async def test_a_running_pod_taken_away_fails_its_task_with_why(
    kube_client: Client,
    kubelet: TestKubelet,
    apiserver: ApiServerProcess,
    flow_id: str,
    take_away: Callable[[TestKubelet, ApiServerProcess, str], Awaitable[None]],
    error_type: str,
    says: str,
) -> None:
    pod = await start_sleeper(kube_client, kubelet, flow_id, "victim")
    await take_away(kubelet, apiserver, pod)
    victim = tasks_of(await outcome(kube_client, flow_id))["victim"]
    assert_failed_as(victim, error_type, says)


@pytest.mark.timeout(45)
async def test_api_server_restart_mid_watch_loses_nothing(
    kube_client: Client, kubelet: TestKubelet, apiserver: ApiServerProcess
) -> None:
    pod = await start_sleeper(kube_client, kubelet, "restart-1", "wait", seconds=0.5)
    await apiserver.restart()  # cuts every watch, the executor's and the kubelet's
    assert (await outcome(kube_client, "restart-1")).status == "succeeded"
    assert kubelet.runs[pod] == 1


async def test_watch_relists_when_its_resource_version_is_gone(
    kube_client: Client,
    kubelet: TestKubelet,
    apiserver: ApiServerProcess,
    executor: KubernetesExecutor,
) -> None:
    await start_sleeper(kube_client, kubelet, "gone410-1", "wait", seconds=0.5)
    assert executor.watcher is not None
    relists = executor.watcher.relists
    apiserver.handler.expire_next_resumed_watch = True
    await apiserver.restart()  # the watch resumes from its resourceVersion: 410 Gone
    assert (await outcome(kube_client, "gone410-1")).status == "succeeded"
    assert apiserver.handler.gone_answers == 1
    assert executor.watcher.relists > relists


@pytest.mark.slow
async def test_runner_killed_mid_flow_is_replaced_and_the_pod_adopted_not_rerun(
    kube_settings: Settings,
    kubelet: TestKubelet,
    executor: KubernetesExecutor,
    tmp_path: Path,
) -> None:
    from weir_scheduler.service import Scheduler

    scheduler = Scheduler(kube_settings)
    scheduler_task = await _start("scheduler", scheduler)
    env = {
        **os.environ,
        "WEIR_NATS_URL": kube_settings.nats_url,
        "WEIR_EXECUTOR": "kubernetes",
        "WEIR_KUBECONFIG": kube_settings.kube_config,
        "WEIR_KUBE_NAMESPACE": NAMESPACE,
        "WEIR_RUNNER_DIR": str(tmp_path / "doomed-runner"),
        "WEIR_DISPATCH_ACK_WAIT": str(kube_settings.dispatch_ack_wait),
        "WEIR_LOG_LEVEL": "WARNING",
    }
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "weir_runner", env=env, stdin=asyncio.subprocess.DEVNULL
    )
    try:
        async with await Client.connect(kube_settings.nats_url) as client:
            flow_id = await client.submit(
                {
                    "id": "crash-1",
                    "name": "crash",
                    "tasks": [pod_shell("long", "sleep 2; echo finished")],
                }
            )
            await wait_started(kubelet, "crash-1-long-1")
            doomed.kill()  # kill -9: the pod keeps running, the dispatch is redelivered
            await doomed.wait()
            runner = Runner(kube_settings, executor=executor)
            runner_task = await _start("runner", runner)
            services = Services(kube_settings, scheduler, runner, scheduler_task, runner_task)
            try:
                view = await outcome(client, flow_id)
            finally:
                await services.stop()
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()

    assert view.status == "succeeded"
    assert kubelet.runs["crash-1-long-1"] == 1  # adopted, never run a second time
    log = Path(kube_settings.runner_dir, "crash-1-long-1", "stdout.log").read_text()
    assert "finished" in log


def test_config_selects_the_kubernetes_executor(kubeconfig: Path) -> None:
    from weir_runner.worker import make_executor

    settings = Settings.from_env(
        {
            "WEIR_EXECUTOR": "kubernetes",
            "WEIR_KUBECONFIG": str(kubeconfig),
            "WEIR_KUBE_NAMESPACE": "batch",
            "WEIR_KUBE_IMAGE_PULL_TIMEOUT": "30",
            "WEIR_KUBE_POD_TTL": "60",
        }
    )
    executor = make_executor(settings)

    assert isinstance(executor, KubernetesExecutor)
    assert executor.config == KubernetesConfig(
        runner_dir=Path(settings.runner_dir),
        namespace="batch",
        kubeconfig=str(kubeconfig),
        image_pull_timeout=30.0,
        pod_ttl=60.0,
    )


async def test_a_pod_change_the_watch_never_delivered_is_found_by_reading_the_pod(
    kube_client: Client, kubelet: TestKubelet, apiserver: ApiServerProcess
) -> None:
    name = await start_sleeper(kube_client, kubelet, "quiet-1", "long")
    pod = apiserver.handler.pod(NAMESPACE, name)
    assert pod is not None
    pod["status"] = {
        "phase": "Failed",
        "containerStatuses": [
            {"name": "task", "state": {"terminated": {"exitCode": 4, "reason": "Error"}}}
        ],
    }
    # Stored behind the watch's back: no event is sent, as when a watch loses one.
    apiserver.handler.objects[PODS, NAMESPACE, name] = pod
    ran = await outcome(kube_client, "quiet-1")

    assert ran.status == "failed"
    assert tasks_of(ran)["long"].exit_code == 4


async def test_a_pods_log_is_live_while_it_runs_and_kept_after_it_is_gone(
    kube_client: Client, kubelet: TestKubelet, apiserver: ApiServerProcess, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    flow_id = await kube_client.submit(
        {
            "id": "live-1",
            "name": "live",
            "tasks": [
                pod_shell(
                    "talk",
                    f"echo first line; {waits_for(go)}; echo last line",
                )
            ],
        }
    )
    await wait_started(kubelet, "live-1-talk-1")

    async def first_line() -> bytes:
        seen = b""
        async for _, chunk in kube_client.logs(flow_id, "talk", attempt=1, follow=True):
            seen += chunk
            if b"first line" in seen:
                return seen
        return seen

    assert b"first line" in await asyncio.wait_for(first_line(), WAIT)
    assert apiserver.handler.pod(NAMESPACE, "live-1-talk-1") is not None  # still running
    go.touch()
    assert (await outcome(kube_client, flow_id)).status == "succeeded"
    assert apiserver.handler.pod(NAMESPACE, "live-1-talk-1") is None  # deleted
    whole = b"".join([c async for _, c in kube_client.logs(flow_id, "talk", attempt=1)])
    assert whole == b"first line\nlast line\n"


def _pod_of(flow_id: str, task_name: str, cmd: list[str], queue: str = "default") -> Pod:
    fields = {"name": task_name, "image": IMAGE, "cmd": cmd, "queue": queue}
    return pod_manifest(dispatch_of(fields, flow_id), NAMESPACE)


async def test_a_running_pod_whose_attempt_is_not_wanted_any_more_is_deleted(
    kube_client: Client,
    kubelet: TestKubelet,
    apiserver: ApiServerProcess,
    executor: KubernetesExecutor,
) -> None:
    # As a runner killed while the flow was cancelled leaves it: running, followed by nobody,
    # its dispatch gone. And a pod of another runner's attempt, still wanted.
    flow_id = await kube_client.submit(
        {
            "id": "elsewhere-1",
            "name": "elsewhere",
            "tasks": [pod_task("far", "sleep", "30", queue="elsewhere")],  # no runner here
        }
    )
    await reached(kube_client, flow_id, "task_dispatched")  # to the queue nobody here takes
    for pod in (
        _pod_of("ghost-1", "left", ["sleep", "30"]),
        _pod_of(flow_id, "far", ["sleep", "30"], queue="elsewhere"),
    ):
        async with apiserver.handler.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod) as r:
            assert r.status == 200
    await wait_started(kubelet, "ghost-1-left-1")

    await until(
        lambda: apiserver.handler.pod(NAMESPACE, "ghost-1-left-1") is None,
        "the orphaned pod of an unknown flow is deleted",
        WAIT,
    )
    sweeps = executor.loops.signals.succeeded
    done = sweeps.count("orphan-sweep")
    # Two whole sweeps since, enough to delete a pod (it must be seen unfollowed twice).
    await asyncio.wait_for(sweeps.wait("orphan-sweep", done + 3), WAIT)
    assert apiserver.handler.pod(NAMESPACE, "elsewhere-1-far-1") is not None  # still wanted
    await kube_client.cancel(flow_id)
    await until(
        lambda: apiserver.handler.pod(NAMESPACE, "elsewhere-1-far-1") is None,
        "the pod of a cancelled flow's attempt is deleted",
        WAIT,
    )
    assert executor.orphans_deleted == 2
