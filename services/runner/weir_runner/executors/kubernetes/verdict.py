"""What a pod's status means for its attempt: one pure function, one named decision type.

`judge(pod)` never waits and never calls the API: the executor keeps the clocks (how long a
pod has been stuck) and decides when "stuck" becomes a failure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from weir_proto.messages import ErrorType, OutputDigest

from weir_runner.artifacts import INTEGRITY_EXIT_CODE, read_digest_lines
from weir_runner.executors.kubernetes.manifest import (
    CONTAINER_NAME,
    INPUTS_CONTAINER,
    OUTPUTS_CONTAINER,
    Pod,
)

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ImageInspectError"})
IMAGE_NEVER_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
"""Waiting reasons that no amount of waiting fixes: the attempt fails at once."""
CONTAINER_CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
NODE_LOST_REASONS = frozenset({"NodeLost", "NodeShutdown", "Terminated", "Shutdown"})


class Stuck(enum.Enum):
    """Ways a pod can wait forever; each has its own time limit in the executor."""

    IMAGE_PULL = "image_pull"
    CONTAINER_CONFIG = "container_config"
    UNSCHEDULABLE = "unschedulable"


@dataclass(frozen=True, slots=True)
class Pending:
    """Not running yet, nothing wrong so far (scheduling, pulling)."""


@dataclass(frozen=True, slots=True)
class Running:
    """The container runs."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """Not running, and will not without help: fails once stuck longer than its limit."""

    stuck: Stuck
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The attempt is over; `error_type` None means it succeeded. `message` is the head of
    the failure message (the executor appends the end of the logs)."""

    exit_code: int | None
    error_type: ErrorType | None
    message: str
    ran: bool = True
    """Whether the container ran (and its logs are worth reading)."""
    outputs: tuple[OutputDigest, ...] = ()
    """On success: the outputs' digests, as the upload container computed them."""


Verdict = Pending | Running | Waiting | Finished


def _status_of(pod: Pod, container: str) -> dict[str, Any]:
    status = pod.get("status", {})
    for found in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        if found.get("name") == container:
            return dict(found)
    return {}


def _container_status(pod: Pod) -> dict[str, Any]:
    """The task's container: a regular one, or the last init container when the pod
    uploads outputs after it (see `manifest`)."""
    return _status_of(pod, CONTAINER_NAME)


def _helper_failure(pod: Pod, container: str) -> str | None:
    """Why an artifact helper container failed, or None while it has not."""
    terminated = (_status_of(pod, container).get("state") or {}).get("terminated")
    if terminated is None or terminated.get("exitCode") == 0:
        return None
    return _detail(terminated.get("reason"), (terminated.get("message") or "").strip())


def _exit_code(pod: Pod, container: str) -> int | None:
    terminated = (_status_of(pod, container).get("state") or {}).get("terminated") or {}
    code = terminated.get("exitCode")
    return code if isinstance(code, int) else None


def _has_container(pod: Pod, container: str) -> bool:
    spec = pod.get("spec", {})
    return any(
        c.get("name") == container
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    )


def _detail(reason: str | None, message: str | None) -> str:
    return ": ".join(part for part in (reason, message) if part) or "no reason given"


def judge(pod: Pod, task: str) -> Verdict:
    """Read the attempt's state from its pod."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    reason = status.get("reason")
    message = status.get("message")
    container = _container_status(pod)
    state = container.get("state") or {}

    if reason == "Evicted":
        return Finished(
            None, ErrorType.EVICTED, f'pod "{name}" of task "{task}" was evicted: {message or ""}'
        )
    if reason == "DeadlineExceeded":
        deadline = pod.get("spec", {}).get("activeDeadlineSeconds")
        return Finished(
            None,
            ErrorType.TIMEOUT,
            f'task "{task}" ran longer than its timeout of {deadline}s and was stopped',
        )
    if reason in NODE_LOST_REASONS or phase == "Unknown":
        node = pod.get("spec", {}).get("nodeName") or "?"
        return Finished(
            None,
            ErrorType.LOST,
            f'pod "{name}" of task "{task}" was lost with its node "{node}" '
            f"({_detail(reason, message)})",
            ran=False,
        )

    inputs_failed = _helper_failure(pod, INPUTS_CONTAINER)
    if inputs_failed is not None and _exit_code(pod, INPUTS_CONTAINER) == INTEGRITY_EXIT_CODE:
        return Finished(
            None,
            ErrorType.ARTIFACT_INTEGRITY,
            f'task "{task}": an input was refused ({inputs_failed})',
            ran=False,
        )
    if inputs_failed is not None:
        return Finished(
            None,
            ErrorType.EXECUTOR,
            f'task "{task}": its inputs could not be downloaded ({inputs_failed})',
            ran=False,
        )
    terminated = state.get("terminated")
    if terminated is not None:
        code = terminated.get("exitCode")
        if terminated.get("reason") == "OOMKilled":
            return Finished(
                code,
                ErrorType.OOM_KILLED,
                f'task "{task}" was killed for using more memory than its limit '
                f"(OOMKilled, exit code {code}); raise kubernetes.resources.limits.memory",
            )
        if code == 0 and _has_container(pod, OUTPUTS_CONTAINER):
            return _after_upload(pod, task)
        if code == 0:
            return Finished(0, None, "")
        return Finished(code, ErrorType.EXIT_CODE, f'task "{task}" exited with code {code}')
    if phase == "Succeeded":
        return Finished(0, None, "")
    if phase == "Failed":
        return Finished(
            None,
            ErrorType.EXECUTOR,
            f'pod "{name}" of task "{task}" failed: {_detail(reason, message)}',
            ran=False,
        )

    waiting = state.get("waiting") or {}
    waiting_reason = waiting.get("reason") or ""
    if waiting_reason in IMAGE_NEVER_REASONS:
        return Finished(
            None,
            ErrorType.INVALID_IMAGE,
            f'task "{task}": image {pod_image(pod)!r} cannot be used '
            f"({_detail(waiting_reason, waiting.get('message'))})",
            ran=False,
        )
    if waiting_reason in IMAGE_PULL_REASONS:
        return Waiting(Stuck.IMAGE_PULL, waiting_reason, waiting.get("message") or "")
    if waiting_reason in CONTAINER_CONFIG_REASONS:
        return Waiting(Stuck.CONTAINER_CONFIG, waiting_reason, waiting.get("message") or "")
    if state.get("running") is not None:
        return Running()
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return Waiting(Stuck.UNSCHEDULABLE, "Unschedulable", condition.get("message") or "")
    return Pending()


def _after_upload(pod: Pod, task: str) -> Verdict:
    """The task exited 0: it succeeded once its outputs are stored."""
    upload_failed = _helper_failure(pod, OUTPUTS_CONTAINER)
    if upload_failed is not None:
        return Finished(
            0,
            ErrorType.EXECUTOR,
            f'task "{task}": its outputs could not be stored ({upload_failed})',
        )
    terminated = (_status_of(pod, OUTPUTS_CONTAINER).get("state") or {}).get("terminated")
    if terminated is not None:
        return Finished(0, None, "", outputs=read_digest_lines(terminated.get("message") or ""))
    if pod.get("status", {}).get("phase") == "Succeeded":
        return Finished(0, None, "")
    return Running()


def pod_image(pod: Pod) -> str:
    spec = pod.get("spec", {})
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if container.get("name") == CONTAINER_NAME:
            return str(container.get("image"))
    return "?"


def stuck_message(waiting: Waiting, pod: Pod, task: str, seconds: float) -> Finished:
    """The failure of a pod that stayed stuck longer than its limit."""
    name = pod.get("metadata", {}).get("name", "?")
    detail = _detail(waiting.reason, waiting.detail)
    match waiting.stuck:
        case Stuck.IMAGE_PULL:
            return Finished(
                None,
                ErrorType.IMAGE_PULL,
                f'task "{task}": image {pod_image(pod)!r} could not be pulled within '
                f"{seconds:g}s ({detail}); check the name, the tag and imagePullSecrets",
                ran=False,
            )
        case Stuck.CONTAINER_CONFIG:
            return Finished(
                None,
                ErrorType.EXECUTOR,
                f'task "{task}": the container of pod "{name}" could not be created within '
                f"{seconds:g}s ({detail}); check that the Secrets named in fromSecret exist",
                ran=False,
            )
        case Stuck.UNSCHEDULABLE:
            return Finished(
                None,
                ErrorType.UNSCHEDULABLE,
                f'pod "{name}" of task "{task}" could not be scheduled within {seconds:g}s '
                f"({detail}); check its resources, nodeSelector and tolerations",
                ran=False,
            )
