"""The NATS of deploy/kubernetes, run for real: a nats-server with the configuration of the
ConfigMap `nats-config` (only its ports and store directory moved) and the environment its
StatefulSet builds from the Secret `weir-nats-users`. Before, that NATS had no users: any
pod that reached it, a task's included, could delete `WEIR_EVENTS` anonymously. Now an
anonymous client is refused, the task pods' user cannot delete, change or purge a stream,
and the scheduler's user creates and changes them as before."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from weir.artifacts import ARTIFACTS_BUCKET_DEFAULT, ArtifactStore
from weir.embedded import _wait_for_port, free_port
from weir.jetstream import ensure_streams, stream_configs
from weir_proto import subjects
from weir_runner.executors.kubernetes.manifest import OUTPUTS_CONTAINER, pod_manifest

from tests.flows import dispatch_of
from tests.fuzz.test_security import _nats_binary, permitted

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
NATS_USERS = {
    "scheduler-password": "3f9c2a7e51b04d8e9a6c1f2b7d3e8a90c4b5d6e7f8a9b0c1",
    "runner-password": "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718",
    "submitter-password": "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f",
    "operator-password": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978",
    "task-password": "7d2e9f4a1c8b3e6d0a5f2c9e4b7d1a8f3c6e0b9d2a5f8c1e",
    "web-password": "5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281",
}
"""The Secret `weir-nats-users` as docs/kubernetes.md has the operator make it (hex)."""
PASSWORD_OF = {
    "weir-scheduler": NATS_USERS["scheduler-password"],
    "weir-runner": NATS_USERS["runner-password"],
    "weir-task": NATS_USERS["task-password"],
}


def _manifest(name: str, kind: str) -> dict[str, Any]:
    for path in DEPLOY.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind and doc["metadata"]["name"] == name:
                found: dict[str, Any] = doc
                return found
    raise AssertionError(f"no {kind} {name} in {DEPLOY}")


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected one {old!r} in the ConfigMap's nats.conf"
    return text.replace(old, new)


@dataclasses.dataclass(frozen=True)
class KubeNats:
    url: str
    monitor_port: int


def _server_environment() -> dict[str, str]:
    """What the StatefulSet's env gives nats-server, with `weir-nats-users` as above."""
    env: dict[str, str] = {}
    container = _manifest("nats", "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    for var in container["env"]:
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "weir-nats-users", var
            env[var["name"]] = NATS_USERS[ref["key"]]
        else:
            env[var["name"]] = var["value"]
    return env


@pytest.fixture
def kube_nats(tmp_path: Path) -> Iterator[KubeNats]:
    conf = _manifest("nats-config", "ConfigMap")["data"]["nats.conf"]
    port, monitor_port = free_port(), free_port()
    conf = _replace_once(conf, "port: 4222\n", f"port: {port}\n")
    conf = _replace_once(conf, "http: 127.0.0.1:8222\n", f"http: 127.0.0.1:{monitor_port}\n")
    conf = _replace_once(conf, "store_dir: /data\n", f"store_dir: {tmp_path / 'js'}\n")
    config = tmp_path / "nats.conf"
    config.write_text(conf)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WEIR_")},
        **_server_environment(),
    }
    proc = subprocess.Popen(
        [_nats_binary(), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    try:
        _wait_for_port(port, 30, "nats-server", proc)
        yield KubeNats(f"nats://127.0.0.1:{port}", monitor_port)
    finally:
        proc.terminate()
        proc.wait(10)


async def _connect(url: str, user: str | None = None, password: str | None = None) -> NATS:
    credentials: dict[str, str] = {}
    if user is not None:  # and its own inbox prefix, as weir.jetstream.connect gives it
        credentials = {"user": user, "password": password or "", "inbox_prefix": f"_INBOX.{user}"}
    return await nats.connect(
        url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5, **credentials
    )


@contextlib.asynccontextmanager
async def connected_as(url: str, user: str) -> AsyncIterator[NATS]:
    nc = await _connect(url, user, PASSWORD_OF[user])
    try:
        yield nc
    finally:
        await nc.close()


def _events_config(**changes: Any) -> StreamConfig:
    (config,) = [c for c in stream_configs() if c.name == subjects.STREAM_EVENTS]
    return dataclasses.replace(config, **changes)


def attacks(js: JetStreamContext) -> dict[str, Callable[[], Awaitable[object]]]:
    events = subjects.STREAM_EVENTS
    return {
        "delete WEIR_EVENTS": lambda: js.delete_stream(events),
        "shrink WEIR_EVENTS to one message": lambda: js.update_stream(_events_config(max_msgs=1)),
        "purge WEIR_EVENTS": lambda: js.purge_stream(events),
        "delete WEIR_COMMANDS": lambda: js.delete_stream(subjects.STREAM_COMMANDS),
        "create a stream": lambda: js.add_stream(StreamConfig(name="STOLEN", subjects=["x.>"])),
        "submit a flow": lambda: js.publish(subjects.SUBMIT, b"{}"),
        "publish an event": lambda: js.publish("weir.events.f.flow_succeeded", b"{}"),
    }


async def test_anonymous_clients_and_wrong_passwords_are_refused(kube_nats: KubeNats) -> None:
    for user, password in ((None, None), ("weir-scheduler", "guess"), ("weir-task", "")):
        with pytest.raises((nats.errors.Error, OSError)):
            nc = await _connect(kube_nats.url, user, password)
            await nc.close()  # not reached: the server closes the connection first
    nc = await _connect(kube_nats.url, "weir-scheduler", PASSWORD_OF["weir-scheduler"])
    await nc.close()


@pytest.mark.parametrize("user", ["weir-task", "weir-runner"])
async def test_task_pods_user_cannot_delete_or_change_weir_events_the_scheduler_can(
    kube_nats: KubeNats, user: str
) -> None:
    url = kube_nats.url
    async with connected_as(url, "weir-scheduler") as scheduler:
        js = scheduler.jetstream()
        await ensure_streams(js)  # as it does at start
        await js.publish("weir.events.f.flow_submitted", b"{}")
        before = await js.stream_info(subjects.STREAM_EVENTS)
    assert before.state.messages == 1

    async with connected_as(url, user) as attacker:
        assert await permitted(attacks(attacker.jetstream(timeout=1.0))) == []

    async with connected_as(url, "weir-scheduler") as scheduler:
        js = scheduler.jetstream()
        after = await js.stream_info(subjects.STREAM_EVENTS)
        assert after.config.max_msgs == before.config.max_msgs
        assert after.state.messages == before.state.messages == 1
        assert await js.stream_info(subjects.STREAM_COMMANDS)
        names = await js.streams_info()
        assert "STOLEN" not in {s.config.name for s in names}
        # The same requests are real attacks: with the scheduler's rights they work.
        await js.add_stream(StreamConfig(name="PROBE", subjects=["probe.>"]))
        await js.update_stream(_events_config(max_msgs=1))
        await js.delete_stream("PROBE")
        shrunk = await js.stream_info(subjects.STREAM_EVENTS)
        assert shrunk.config.max_msgs == 1


def _helper_environment(url: str, container: dict[str, Any]) -> dict[str, str]:
    """A helper container's environment as a kubelet builds it, with `weir-task-nats` as
    docs/kubernetes.md has the operator make it (`url`, `user`, `password`)."""
    secret = {"url": url, "user": "weir-task", "password": NATS_USERS["task-password"]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    for var in container["env"]:
        if "valueFrom" not in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "weir-task-nats", var
        if ref["key"] in secret:
            env[var["name"]] = secret[ref["key"]]
        else:
            assert ref.get("optional"), f"{var['name']}: key {ref['key']} is required"
    return env


async def test_task_pods_helper_stores_outputs_as_the_task_user(
    kube_nats: KubeNats, tmp_path: Path
) -> None:
    async with connected_as(kube_nats.url, "weir-scheduler") as scheduler:
        await ArtifactStore(scheduler.jetstream(), ARTIFACTS_BUCKET_DEFAULT).ensure_bucket()
    task = {"name": "t", "image": "i", "cmd": ["true"], "outputs": [{"name": "d", "path": "o"}]}
    pod = pod_manifest(dispatch_of(task, "f"), "weir-tasks")
    [helper] = [c for c in pod["spec"]["containers"] if c["name"] == OUTPUTS_CONTAINER]
    (tmp_path / "o.bin").write_bytes(os.urandom(100_000))

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "weir_runner.artifacts", "upload", "--flow", "f", "d=o.bin"],
        cwd=tmp_path,
        env=_helper_environment(kube_nats.url, helper),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert helper["command"][3] == "upload"  # the same command the pod runs
    async with connected_as(kube_nats.url, "weir-scheduler") as scheduler:
        stored = await ArtifactStore(scheduler.jetstream(), ARTIFACTS_BUCKET_DEFAULT).list("f")
    assert [a.name for a in stored] == ["d"]


def test_monitoring_answers_the_probes_on_the_loopback(kube_nats: KubeNats) -> None:
    container = _manifest("nats", "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    url = container["readinessProbe"]["exec"]["command"][-1]
    url = url.replace("127.0.0.1:8222", f"127.0.0.1:{kube_nats.monitor_port}")
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
