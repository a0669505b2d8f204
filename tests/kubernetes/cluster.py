"""A Kubernetes cluster for tests: kmock's API emulator over real HTTP plus a test kubelet.

`FakeApiServer` is kmock's `KubernetesEmulator` with what a pod runner needs on top:
resourceVersions and uids on pods, the `pods/<name>/log` subresource (served from the
kubelet's log files), `watch=True` understood as `watch=true` (kubernetes_asyncio sends the
former, real API servers accept both), and a switch that answers the next resumed watch with
410 Gone. `TestKubelet` watches pods through that API, runs each pod's command as a local
process (the image is ignored, except the ones named `does-not-exist...`, which never pull),
and writes back the status a real kubelet would: phase, containerStatuses, reasons, exit
codes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import signal
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import kmock
from kmock._internal import rendering
from weir_runner import sandbox
from weir_runner.sandbox import Mount

NODE_NAME = "kubelet-1"
NODE_LABELS = {"kubernetes.io/hostname": NODE_NAME}
MISSING_IMAGE_PREFIX = "does-not-exist"
PODS = "v1/pods"
_FOLLOWED_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
SECRETS = "v1/secrets"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeApiServer(kmock.KubernetesEmulator):
    """kmock's emulator with resourceVersions, pod logs and a 410 switch."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources[PODS] = kmock.ResourceInfo(kind="Pod", namespaced=True)
        self.resources[SECRETS] = kmock.ResourceInfo(kind="Secret", namespaced=True)
        self.versions = itertools.count(1)
        self.log_files: dict[tuple[str, str, str], Path] = {}
        """(namespace, pod, container) -> the container's log."""
        self.logs_ended: set[tuple[str, str, str]] = set()
        """Containers whose log is complete (they have ended)."""
        self.expire_next_resumed_watch = False
        self.gone_answers = 0
        self.watches: dict[int, aiohttp.web.BaseRequest] = {}

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        following = _FOLLOWED_LOG.match(raw_request.path)
        if following and raw_request.query.get("follow", "").lower() == "true":
            namespace, name = following.groups()
            container = raw_request.query.get("container") or "task"
            return await self._follow_log(raw_request, (namespace, name, container))
        if raw_request.query.get("watch") == "True":
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.update_query(watch="true"))
        watching = raw_request.query.get("watch") == "true"
        if watching:
            self.watches[id(raw_request)] = raw_request
        try:
            response: aiohttp.web.StreamResponse = await super().__call__(raw_request)
        finally:
            self.watches.pop(id(raw_request), None)
        return response

    async def _follow_log(
        self, request: aiohttp.web.BaseRequest, key: tuple[str, str, str]
    ) -> aiohttp.web.StreamResponse:
        """`follow=true`: the container's log as it is written, until the container has
        ended (or the pod is gone), as a kubelet streams it."""
        if self.pod(*key[:2]) is None:
            return aiohttp.web.json_response(
                {"kind": "Status", "code": 404, "message": f'pods "{key[1]}" not found'},
                status=404,
            )
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        sent = 0
        while True:
            ended = key in self.logs_ended or self._terminated(*key)
            path = self.log_files.get(key)
            if path is not None and path.exists():
                with open(path, "rb") as log:
                    log.seek(sent)
                    data = log.read()
                if data:
                    await response.write(data)
                    sent += len(data)
            if ended:
                break
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response

    def _terminated(self, namespace: str, name: str, container: str) -> bool:
        """The pod is gone, or its status says the container has ended."""
        pod = self.pod(namespace, name)
        if pod is None:
            return True
        status = pod.get("status") or {}
        for found in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        ):
            if found.get("name") == container and "terminated" in (found.get("state") or {}):
                return True
        return False

    def drop_watches(self) -> None:
        """Cut every open watch, as a stopping API server does."""
        for request in list(self.watches.values()):
            if request.transport is not None:
                request.transport.close()

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.subresource == "log" and str(request.method) in ("GET", "method.GET"):
            return self._serve_log(request)
        resumed = request.action == kmock.action.WATCH and request.params.get("resourceVersion")
        if resumed and self.expire_next_resumed_watch:
            self.expire_next_resumed_watch = False
            self.gone_answers += 1
            return _gone()
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE) and isinstance(
            request.data, dict
        ):
            metadata = request.data.setdefault("metadata", {})
            metadata["resourceVersion"] = str(next(self.versions))
            if request.action == kmock.action.CREATE:
                if request.namespace:
                    metadata["namespace"] = request.namespace
                metadata.setdefault("uid", os.urandom(8).hex())
                metadata.setdefault("creationTimestamp", _now())
        response: aiohttp.web.StreamResponse = await super()._handle(request)
        return response

    async def _serve_list(self, request: rendering.Request) -> Any:
        listing: Any = await super()._serve_list(request)
        listing["metadata"]["resourceVersion"] = str(next(self.versions))
        return listing

    def _serve_log(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        key = (request.namespace or "", request.name or "")
        if self.pod(*key) is None:
            return aiohttp.web.json_response(
                {"kind": "Status", "code": 404, "message": f'pods "{key[1]}" not found'},
                status=404,
            )
        container = request.params.get("container") or "task"
        path = self.log_files.get((*key, container))
        return aiohttp.web.Response(
            body=path.read_bytes() if path and path.exists() else b"", content_type="text/plain"
        )

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod as stored now, None if it does not exist (or was deleted)."""
        try:
            obj = self.objects[PODS, namespace, name]
        except KeyError:
            return None
        return None if obj.deleted else dict(obj.raw)

    def pod_history(self, namespace: str, name: str) -> list[dict[str, Any]]:
        try:
            obj = self.objects[PODS, namespace, name]
        except KeyError:
            return []
        return [dict(v.raw) for v in obj.history if v is not None]

    def put_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.objects[SECRETS, namespace, name] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": encoded,
        }


def _gone() -> aiohttp.web.Response:
    event = {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": 410,
            "reason": "Expired",
            "message": "too old resource version",
        },
    }
    return aiohttp.web.Response(body=json.dumps(event).encode() + b"\n")


class ApiServerProcess:
    """The emulator served on one fixed 127.0.0.1 port, which can be stopped and restarted."""

    def __init__(self, handler: FakeApiServer, port: int) -> None:
        self.handler = handler
        self.port = port
        self.server: kmock.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = kmock.Server(self.handler, host="127.0.0.1", port=self.port)
        await self.server.__aenter__()

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            self.handler.drop_watches()
            await server.__aexit__(None, None, None)

    async def restart(self) -> None:
        await self.stop()
        await self.start()


def write_kubeconfig(path: Path, server_url: str, namespace: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server_url}}],
        "users": [{"name": "weir", "user": {"token": "test-token"}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "weir", "namespace": namespace}}
        ],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


class TestKubelet:
    """Runs the pods it sees through the API as local processes and reports their status."""

    __test__ = False

    def __init__(self, server: ApiServerProcess, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.session: aiohttp.ClientSession | None = None
        self.pods: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.processes: dict[tuple[str, str], asyncio.subprocess.Process] = {}
        self.runs: Counter[str] = Counter()
        """How many times each pod's command was started."""
        self.started: dict[str, asyncio.Event] = {}
        self._evicted: set[tuple[str, str]] = set()
        self._watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TestKubelet:
        self.session = aiohttp.ClientSession()
        self._watch = asyncio.create_task(self._watch_pods(), name="kubelet-watch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks = [t for t in (self._watch, *self.pods.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def started_event(self, name: str) -> asyncio.Event:
        return self.started.setdefault(name, asyncio.Event())

    async def _watch_pods(self) -> None:
        assert self.session is not None
        while True:
            try:
                async with self.session.get(
                    f"{self.server.url}/api/v1/pods", params={"watch": "true"}
                ) as response:
                    async for line in response.content:
                        if line.strip():
                            self._on_event(json.loads(line))
            except (aiohttp.ClientError, OSError, ValueError):
                pass
            await asyncio.sleep(0.05)  # the API server is restarting: come back

    def _on_event(self, event: dict[str, Any]) -> None:
        pod = event.get("object") or {}
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event.get("type") == "DELETED":
            task = self.pods.pop(key, None)
            if task is not None:
                task.cancel()  # kills the process
            return
        phase = (pod.get("status") or {}).get("phase")
        if key not in self.pods and phase not in ("Succeeded", "Failed"):
            self.pods[key] = asyncio.create_task(self._run_pod(pod), name=f"pod-{key[1]}")

    async def _patch_status(self, key: tuple[str, str], status: dict[str, Any]) -> bool:
        """Write the pod's status (retrying while the API server is away); False if the
        pod is gone."""
        assert self.session is not None
        namespace, name = key
        while True:
            try:
                async with self.session.patch(
                    f"{self.server.url}/api/v1/namespaces/{namespace}/pods/{name}/status",
                    data=json.dumps({"status": status}),
                    headers={"Content-Type": "application/merge-patch+json"},
                ) as response:
                    if response.status == 404:
                        return False
                    if response.status < 300:
                        return True
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.05)

    async def _run_pod(self, pod: dict[str, Any]) -> None:
        """Run the pod as a kubelet does: its init containers one after the other (each must
        exit 0), then its containers, each with its env, volumes and termination message,
        writing the status a real kubelet would after each step."""
        meta, spec = pod["metadata"], pod["spec"]
        key = (meta.get("namespace", ""), meta["name"])
        run = _PodStatus(spec)
        selector = spec.get("nodeSelector") or {}
        if any(NODE_LABELS.get(k) != v for k, v in selector.items()):
            await self._patch_status(
                key,
                {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/1 nodes are available: 1 node(s) didn't match "
                            "Pod's node affinity/selector.",
                        }
                    ],
                },
            )
            return
        await self._patch_status(key, {"phase": "Pending", "hostIP": "127.0.0.1"})
        pod_dir = Path(tempfile.mkdtemp(dir=self.workdir, prefix=f"{key[1]}-"))
        volumes = await self._volumes(key[0], spec, pod_dir)
        deadline = spec.get("activeDeadlineSeconds")
        ends_at = None if deadline is None else asyncio.get_running_loop().time() + deadline
        for container in spec.get("initContainers") or []:
            outcome = await self._run_container(key, container, run, volumes, pod_dir, ends_at)
            if outcome != 0:
                if outcome is not None:
                    await self._patch_status(key, run.render("Failed"))
                return
        containers = spec["containers"]
        outcomes = await asyncio.gather(
            *(self._run_container(key, c, run, volumes, pod_dir, ends_at) for c in containers)
        )
        if all(outcome is not None for outcome in outcomes):
            phase = "Succeeded" if all(outcome == 0 for outcome in outcomes) else "Failed"
            await self._patch_status(key, run.render(phase))

    async def _volumes(
        self, namespace: str, spec: dict[str, Any], pod_dir: Path
    ) -> dict[str, Path]:
        """Each volume of the pod as a directory: emptyDir empty, a Secret's keys as files."""
        found: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            path = pod_dir / "volumes" / volume["name"]
            path.mkdir(parents=True)
            path.chmod(0o777)
            if "secret" in volume:
                source = volume["secret"]
                data = await self._secret_data(namespace, source["secretName"]) or {}
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] in data:
                        (path / item["path"]).write_bytes(data[item["key"]])
            found[volume["name"]] = path
        return found

    async def _run_container(
        self,
        key: tuple[str, str],
        container: dict[str, Any],
        run: _PodStatus,
        volumes: dict[str, Path],
        pod_dir: Path,
        ends_at: float | None,
    ) -> int | None:
        """Run one container to its end: its exit code, or None when the pod will not go on
        (stuck waiting, past its deadline, evicted or deleted)."""
        name = container["name"]
        if str(container.get("image", "")).startswith(MISSING_IMAGE_PREFIX):
            message = f'failed to pull image "{container["image"]}": not found'
            for reason in ("ErrImagePull", "ImagePullBackOff"):
                run.set(name, {"waiting": {"reason": reason, "message": message}})
                await self._patch_status(key, run.render("Pending"))
                message = f"Back-off {message}"
            return None
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        for var in container.get("env") or []:
            if "valueFrom" in var:
                ref = var["valueFrom"]["secretKeyRef"]
                value = (await self._secret_data(key[0], ref["name"]) or {}).get(ref["key"])
                if value is None and ref.get("optional"):
                    continue  # as a kubelet does: an optional key that is missing sets nothing
                if value is None:
                    message = f'secret "{ref["name"]}" key "{ref["key"]}" not found'
                    waiting = {"reason": "CreateContainerConfigError", "message": message}
                    run.set(name, {"waiting": waiting})
                    await self._patch_status(key, run.render("Pending"))
                    return None
                env[var["name"]] = value.decode()
            else:
                env[var["name"]] = var.get("value", "")
        log_path = pod_dir / f"{name}.log"
        self.server.handler.log_files[(*key, name)] = log_path
        termination = pod_dir / f"{name}.termination-log"
        termination.write_bytes(b"")
        argv = [*container["command"], *(container.get("args") or [])]
        if container.get("volumeMounts") or container.get("workingDir"):
            mounts = [
                Mount(
                    volumes[m["name"]] / m.get("subPath", ""),
                    m["mountPath"],
                    bool(m.get("readOnly")),
                )
                for m in container.get("volumeMounts") or []
            ]
            for mount in mounts:
                if not mount.source.exists():
                    mount.source.mkdir(parents=True)  # a missing subPath becomes a directory
            mounts.append(Mount(termination, "/dev/termination-log"))
            root = pod_dir / f"{name}.root"
            root.mkdir()
            argv = sandbox.wrap(argv, mounts, container.get("workingDir") or "/", root)
            cwd = pod_dir
        else:
            cwd = Path(tempfile.mkdtemp(dir=self.workdir))
        with open(log_path, "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[key] = proc
        is_task = name == "task"
        if is_task:
            self.runs[key[1]] += 1
        started_at = _now()
        try:
            run.set(name, {"running": {"startedAt": started_at}})
            await self._patch_status(key, run.render("Running" if run.initialized else "Pending"))
            if is_task:
                self.started_event(key[1]).set()
            left = None if ends_at is None else ends_at - asyncio.get_running_loop().time()
            try:
                code = await asyncio.wait_for(proc.wait(), left)
            except TimeoutError:
                await self._fail_pod(
                    key,
                    proc,
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified "
                    f"deadline of {run.deadline}s",
                )
                return None
            if key in self._evicted:
                return None
            limits = (container.get("resources") or {}).get("limits") or {}
            if code < 0:
                exit_code = 128 - code
                reason = "OOMKilled" if code == -signal.SIGKILL and "memory" in limits else "Error"
            else:
                exit_code, reason = code, ("Completed" if code == 0 else "Error")
            terminated: dict[str, Any] = {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": started_at,
                "finishedAt": _now(),
            }
            message = _termination_message(container, termination, log_path, exit_code)
            if message:
                terminated["message"] = message
            run.set(name, {"terminated": terminated})
            if exit_code == 0:
                await self._patch_status(
                    key, run.render("Running" if run.initialized else "Pending")
                )
            return exit_code
        finally:
            if proc.returncode is None:  # the pod was deleted: stop its container
                _kill(proc)
                with contextlib.suppress(Exception):
                    await asyncio.shield(proc.wait())
            self.server.handler.logs_ended.add((*key, name))

    async def _secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        assert self.session is not None
        async with self.session.get(
            f"{self.server.url}/api/v1/namespaces/{namespace}/secrets/{name}"
        ) as response:
            if response.status != 200:
                return None
            data = (await response.json()).get("data") or {}
        return {k: base64.b64decode(v) for k, v in data.items()}

    async def evict(self, namespace: str, name: str) -> None:
        """The node ran short of memory and evicts the pod, as a real kubelet does."""
        key = (namespace, name)
        self._evicted.add(key)
        killed = {"exitCode": 137, "reason": "Error"}
        await self._fail_pod(
            key,
            self.processes[key],
            "Evicted",
            "The node was low on resource: memory.",
            containerStatuses=[{"name": "task", "ready": False, "state": {"terminated": killed}}],
        )

    async def _fail_pod(
        self,
        key: tuple[str, str],
        proc: asyncio.subprocess.Process,
        reason: str,
        message: str,
        **status: Any,
    ) -> None:
        """Kill the pod's running container `proc` and mark the pod failed for `reason`, as
        the kubelet does at a deadline or an eviction."""
        _kill(proc)
        await proc.wait()
        await self._patch_status(
            key, {"phase": "Failed", "reason": reason, "message": message, **status}
        )


class _PodStatus:
    """The statuses of a pod's containers as a kubelet reports them."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.init = [c["name"] for c in spec.get("initContainers") or []]
        self.main = [c["name"] for c in spec["containers"]]
        self.states: dict[str, dict[str, Any]] = {}
        self.deadline = spec.get("activeDeadlineSeconds")

    def set(self, name: str, state: dict[str, Any]) -> None:
        self.states[name] = state

    @property
    def initialized(self) -> bool:
        return all("terminated" in self.states.get(n, {}) for n in self.init)

    def _statuses(self, names: list[str], waiting: str) -> list[dict[str, Any]]:
        return [
            {
                "name": n,
                "ready": "running" in self.states.get(n, {}),
                "state": self.states.get(n) or {"waiting": {"reason": waiting}},
            }
            for n in names
        ]

    def render(self, phase: str) -> dict[str, Any]:
        status: dict[str, Any] = {
            "phase": phase,
            "containerStatuses": self._statuses(self.main, "PodInitializing"),
        }
        if self.init:
            status["initContainerStatuses"] = self._statuses(self.init, "PodInitializing")
        return status


def _termination_message(
    container: dict[str, Any], termination: Path, log_path: Path, exit_code: int
) -> str:
    """What the container wrote to its termination log; with FallbackToLogsOnError and a
    failure, else the end of its log (as a kubelet does: at most 80 lines, 2 KiB)."""
    written = termination.read_text(errors="replace").strip()
    policy = container.get("terminationMessagePolicy")
    if written or exit_code == 0 or policy != "FallbackToLogsOnError":
        return written
    lines = log_path.read_bytes()[-2048:].decode(errors="replace").splitlines()[-80:]
    return "\n".join(lines).strip()


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
