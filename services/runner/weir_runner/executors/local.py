"""LocalExecutor: runs each attempt as a local process (no shell) in its own directory.

The embedded default, for laptops, CI and single-machine installs. Each attempt gets
`<runner_dir>/<attempt_id>/work` as its working directory, its stdout and stderr in files
beside it, and `result.json` once it has ended, which makes a redelivered attempt report
its result instead of running again.

Inputs are downloaded from the artifacts Object Store into the working directory before the
command starts (from the flow that produced them: `dispatch.input_flows` names an earlier
flow whose outputs a rerun reuses); outputs are uploaded after exit 0. `fromSecret` values
come from weir's encrypted secret store (`weir secret set`), else from the runner's
`WEIR_SECRET_<NAME>` variable, and go only into the process environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
from pathlib import Path, PurePosixPath

import msgspec
from nats.js import JetStreamContext
from weir import telemetry
from weir.artifacts import ArtifactError, ArtifactNotFound
from weir.config import Settings
from weir.secrets import SECRET_NAME, SecretError, SecretNotFound
from weir_proto.messages import SNOOZE_EXIT_CODE, Dispatch, ErrorType

from weir_runner.artifacts import DataPlane
from weir_runner.executors.base import AttemptResult, OnStarted

STDERR_TAIL_BYTES = 2048
KILL_GRACE_SECONDS = 5.0
PASSED_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
SECRET_ENV_PREFIX = "WEIR_SECRET_"
_PR_SET_PDEATHSIG = 1


class _Recorded(msgspec.Struct):
    exit_code: int | None
    error_type: ErrorType | None
    message: str
    snooze_seconds: float | None = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """A task must not outlive a runner killed with -9 (the attempt is redelivered)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class LocalExecutor:
    name = "local"

    def __init__(
        self, root: Path, settings: Settings | None = None, data: DataPlane | None = None
    ) -> None:
        """`data` (or one made from `settings`) reaches the artifacts and secrets in NATS;
        without either, tasks with inputs, outputs or stored secrets fail with a message."""
        self.root = root.resolve()
        if data is None and settings is not None:
            data = DataPlane(
                settings.nats_url, settings.artifacts_bucket, f"weir-runner-{settings.runner_name}"
            )
        self.data = data

    def attach(self, js: JetStreamContext) -> None:
        """Share the worker's NATS connection instead of opening one for the data plane."""
        if self.data is not None:
            self.data.attach(js)

    def attempt_dir(self, attempt_id: str) -> Path:
        return self.root / attempt_id

    async def run(self, dispatch: Dispatch, on_started: OnStarted) -> AttemptResult:
        home = self.attempt_dir(dispatch.attempt_id)
        result_file = home / "result.json"
        if result_file.exists():
            recorded = msgspec.json.decode(result_file.read_bytes(), type=_Recorded)
            return AttemptResult(
                recorded.exit_code, recorded.error_type, recorded.message, recorded.snooze_seconds
            )
        result = await self._run_fresh(dispatch, home, on_started)
        tmp = home / "result.json.tmp"
        tmp.write_bytes(
            msgspec.json.encode(
                _Recorded(
                    result.exit_code, result.error_type, result.message, result.snooze_seconds
                )
            )
        )
        os.replace(tmp, result_file)
        return result

    async def _run_fresh(
        self, dispatch: Dispatch, home: Path, on_started: OnStarted
    ) -> AttemptResult:
        if home.exists():  # an earlier run of this attempt was interrupted: start clean
            shutil.rmtree(home)
        work = home / "work"
        work.mkdir(parents=True)
        task = dispatch.task
        problem = self._check_paths(dispatch)
        if problem:
            return AttemptResult(None, ErrorType.EXECUTOR, problem)
        env, problem = await self._environment(dispatch, work)
        if problem:
            return AttemptResult(None, ErrorType.EXECUTOR, problem)
        problem = await self._place_inputs(dispatch, work)
        if problem:
            return AttemptResult(None, ErrorType.EXECUTOR, problem)
        with open(home / "stdout.log", "wb") as out, open(home / "stderr.log", "wb") as err:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *task.cmd,
                    cwd=work,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            except (FileNotFoundError, PermissionError, NotADirectoryError, OSError) as exc:
                return AttemptResult(
                    None,
                    ErrorType.EXECUTOR,
                    f'task "{task.name}": cannot start {task.cmd[0]!r}: {exc.strerror or exc}',
                )
            await on_started()
            try:
                code = await proc.wait()
            except asyncio.CancelledError:
                await _terminate(proc)
                raise
        if code != 0:
            return AttemptResult(
                code,
                ErrorType.EXIT_CODE,
                _failure_message(task.name, code, home / "stderr.log"),
                snooze_seconds=_snooze_seconds(home / "snooze")
                if code == SNOOZE_EXIT_CODE
                else None,
            )
        problem = await self._keep_outputs(dispatch, work)
        if problem:
            return AttemptResult(code, ErrorType.EXECUTOR, problem)
        return AttemptResult(0)

    def _check_paths(self, dispatch: Dispatch) -> str | None:
        task = dispatch.task
        for kind, items in (("input", task.inputs), ("output", task.outputs)):
            for item in items:
                if PurePosixPath(item.path).is_absolute():
                    return (
                        f'task "{task.name}": {kind} path {item.path!r} is absolute; the local '
                        "executor runs on this machine without a sandbox and never writes outside "
                        "the attempt's directory: use a relative path, or the kubernetes executor"
                    )
        return None

    async def _environment(
        self, dispatch: Dispatch, work: Path
    ) -> tuple[dict[str, str], str | None]:
        env = {k: os.environ[k] for k in PASSED_THROUGH_ENV if k in os.environ}
        env.update(
            WEIR_FLOW_ID=dispatch.flow_id,
            WEIR_TASK=dispatch.task.name,
            WEIR_ATTEMPT=str(dispatch.attempt),
            WEIR_ATTEMPT_ID=dispatch.attempt_id,
            WEIR_WORKDIR=str(work),
            WEIR_SNOOZE_FILE=str(work.parent / "snooze"),
            # The task's own spans continue the flow's trace under its attempt span.
            TRACEPARENT=telemetry.attempt_traceparent(
                dispatch.flow_id, dispatch.task.name, dispatch.attempt
            ),
        )
        for var in dispatch.task.env:
            if var.value is not None:
                env[var.name] = var.value
                continue
            assert var.from_secret is not None
            value, problem = await self._secret(var.from_secret)
            if problem:
                return env, f'task "{dispatch.task.name}": env {var.name} wants {problem}'
            assert value is not None
            env[var.name] = value
        return env, None

    async def _secret(self, name: str) -> tuple[str | None, str | None]:
        """The value of secret `name` (weir's store first, then WEIR_SECRET_<NAME>), or why
        there is none. The reason names the secret, never a value."""
        key = SECRET_ENV_PREFIX + "".join(c if c.isalnum() else "_" for c in name.upper())
        if self.data is not None and SECRET_NAME.match(name):
            async with self.data.session() as js:
                try:
                    value = await self.data.secrets(js).get(name)
                except SecretNotFound:
                    pass
                except SecretError as exc:
                    if key not in os.environ:
                        return None, f'secret "{name}": {exc}'
                else:
                    try:
                        return value.decode(), None
                    except UnicodeDecodeError:
                        return None, f'secret "{name}", which is not UTF-8 text'
        if key in os.environ:
            return os.environ[key], None
        return None, (
            f'secret "{name}", which does not exist (store it with `weir secret set {name}`, '
            f"or set {key} in the runner's environment)"
        )

    def _no_data_plane(self, dispatch: Dispatch) -> str:
        return (
            f'task "{dispatch.task.name}": this runner has no artifact store (NATS) configured, '
            "so it cannot move inputs and outputs"
        )

    async def _place_inputs(self, dispatch: Dispatch, work: Path) -> str | None:
        task = dispatch.task
        if not task.inputs:
            return None
        if self.data is None:
            return self._no_data_plane(dispatch)
        async with self.data.session() as js:
            store = self.data.artifacts(js)
            for item in task.inputs:
                producer_flow = dispatch.input_flows.get(item.from_, dispatch.flow_id)
                target = _inside(work, item.path)
                if target is None:
                    return f'task "{task.name}": input path {item.path!r} leaves the work dir'
                try:
                    await store.download(producer_flow, item.from_, target)
                except ArtifactNotFound:
                    return (
                        f'task "{task.name}": input "{item.from_}" (for {item.path!r}) was not '
                        f"found: flow {producer_flow} has no such output in bucket {store.bucket}"
                    )
                except ArtifactError as exc:
                    return f'task "{task.name}": input "{item.from_}": {exc}'
        return None

    async def _keep_outputs(self, dispatch: Dispatch, work: Path) -> str | None:
        task = dispatch.task
        for item in task.outputs:
            source = _inside(work, item.path)
            if source is None or not source.is_file():
                return (
                    f'task "{task.name}": output "{item.name}" expected a file at '
                    f"{item.path!r} in the task's working directory, but there is none"
                )
        if not task.outputs:
            return None
        if self.data is None:
            return self._no_data_plane(dispatch)
        async with self.data.session() as js:
            store = self.data.artifacts(js)
            for item in task.outputs:
                source = _inside(work, item.path)
                assert source is not None
                try:
                    await store.upload(dispatch.flow_id, item.name, source)
                except ArtifactError as exc:
                    return f'task "{task.name}": output "{item.name}": {exc}'
        return None


def _inside(work: Path, relative: str) -> Path | None:
    target = (work / relative).resolve()
    return target if target.is_relative_to(work.resolve()) else None


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def _snooze_seconds(path: Path) -> float | None:
    """The delay a snoozing task wrote to $WEIR_SNOOZE_FILE, if any (bounded to a day)."""
    try:
        value = float(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return min(max(value, 0.0), 86_400.0) if value == value else None


def _failure_message(task: str, code: int, stderr: Path) -> str:
    if code < 0:
        head = f'task "{task}" was killed by signal {-code}'
    else:
        head = f'task "{task}" exited with code {code}'
    size = stderr.stat().st_size
    with open(stderr, "rb") as handle:
        handle.seek(max(0, size - STDERR_TAIL_BYTES))
        tail = handle.read().decode(errors="replace").strip()
    if not tail:
        return head
    marker = "…" if size > STDERR_TAIL_BYTES else ""
    return f"{head}; stderr ends: {marker}{tail}"
