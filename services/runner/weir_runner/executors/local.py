"""LocalExecutor: runs each attempt as a local process (no shell) in its own directory.

The embedded default, for laptops, CI and single-machine installs. Each attempt gets
`<runner_dir>/<attempt_id>/work` as its working directory, its stdout and stderr in files
beside it, its exit code in `exit` the moment it ends (written by a tiny shell supervisor, so
even a runner killed with -9 at that very moment loses nothing), and `result.json` once the
runner has finished with it. A redelivered attempt reports its result, takes the recorded exit
code, or adopts the still-running process — it never runs a finished task again. Runners of
one machine share WEIR_RUNNER_DIR for this.

Inputs are downloaded from the artifact store (the NATS Object Store, or S3 when
`WEIR_ARTIFACTS_URL` says so) into the working directory before the command starts (from
the flow that produced them: `dispatch.input_flows` names an earlier flow whose outputs a
rerun reuses); outputs are uploaded after exit 0. `fromSecret` values come from weir's
encrypted secret store (`weir secret set`), else from the runner's `WEIR_SECRET_<NAME>`
variable, and go only into the process environment.

Each attempt runs under a supervisor (`weir_runner.supervisor`, started with a fixed
environment, never the task's) that keeps its logs within `WEIR_TASK_LOG_MAX`, records its exit
code and kills everything the task started when it ends; the task runs as an unprivileged user
when the runner is root, in a cgroup or under rlimits (`weir_runner.containment`).
"""

from __future__ import annotations

import asyncio
import base64
import glob
import logging
import os
import posixpath
import re
import shutil
import signal
import sys
from pathlib import Path, PurePosixPath

import msgspec
from nats.js import JetStreamContext
from weir import telemetry
from weir.artifacts import ArtifactError, ArtifactIntegrityError, ArtifactNotFound
from weir.config import (
    TASK_LOG_MAX_DEFAULT,
    TASK_MEMORY_MAX_DEFAULT,
    TASK_PIDS_MAX_DEFAULT,
    TASK_TIMEOUT_DEFAULT,
    Settings,
)
from weir.secrets import SECRET_NAME, SecretError, SecretNotFound, env_secret
from weir_proto.messages import SNOOZE_EXIT_CODE, Dispatch, ErrorType, OutputDigest

from weir_runner import sandbox, supervisor
from weir_runner.artifacts import DataPlane, create_placeholder, never_written
from weir_runner.attempt_dir import AttemptDir
from weir_runner.containment import Containment
from weir_runner.executors.base import AttemptResult, Executor, OnStarted
from weir_runner.process_groups import group_alive, read_pid, signal_group

log = logging.getLogger("weir.runner.local")

STDERR_TAIL_BYTES = 2048
KILL_GRACE_SECONDS = 5.0
PASSED_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
SECRET_ENV_PREFIX = "WEIR_SECRET_"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


_DEFAULT = Containment(
    user=None,
    cgroup=None,
    memory_max=TASK_MEMORY_MAX_DEFAULT,
    pids_max=TASK_PIDS_MAX_DEFAULT,
    cpu_seconds=None,
    log_max=TASK_LOG_MAX_DEFAULT,
    timeout=TASK_TIMEOUT_DEFAULT,
)
"""An executor made without settings (tests): tasks as the runner's user, default limits."""


SUPERVISOR_ENV = {"PATH": sandbox.TOOLS_PATH, "LC_ALL": "C.UTF-8"}
"""The supervisor's whole environment: the task's PATH, LD_PRELOAD and the like apply to the
task only."""
SNOOZE_READ_BYTES = 64
ADOPT_POLL_SECONDS = 0.1


def supervisor_argv(home: Path) -> list[str]:
    """The command that supervises the attempt in `home`: it runs the task (argv as given,
    no splitting) and records its exit code in `exit` the moment it and everything it started
    have ended. It outlives a runner killed with -9: the next runner on this machine adopts the
    attempt (waits for it, or takes its recorded exit code) instead of starting it again, so a
    task that finished is never run twice, whenever the runner died."""
    return [sys.executable, "-I", "-S", supervisor.__file__, str(home)]


class LocalExecutor(Executor):
    name = "local"

    def __init__(
        self, root: Path, settings: Settings | None = None, data: DataPlane | None = None
    ) -> None:
        """`data` (or one made from `settings`) reaches the artifacts and secrets in NATS;
        without either, tasks with inputs, outputs or stored secrets fail with a message."""
        self.root = root.resolve()
        self.containment = Containment.probe(settings) if settings is not None else _DEFAULT
        if settings is not None and self.containment.user is not None:
            # Tasks may pass through it to their own directories, not list the others'.
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o711)
        if settings is not None:
            log.info("local task isolation", extra=self.containment.describe())
            for warning in self.containment.warnings():
                log.warning("local tasks are less isolated: %s", warning)
            closed = self.containment.unreachable(self.root)
            if closed is not None:
                log.warning(
                    "tasks run as %s cannot reach their directories: %s is closed to others "
                    "(chmod o+x it, or set WEIR_RUNNER_DIR elsewhere); they start in their "
                    "working directory, but its absolute path and absolute artifact paths fail",
                    self.containment.user.name if self.containment.user else "",
                    closed,
                )
        if data is None and settings is not None:
            data = DataPlane(
                settings.nats_url,
                settings.artifacts_bucket,
                f"weir-runner-{settings.runner_name}",
                s3=settings.artifacts_s3,
            )
        self.data = data

    def attach(self, js: JetStreamContext) -> None:
        """Share the worker's NATS connection instead of opening one for the data plane."""
        if self.data is not None:
            self.data.attach(js)

    def attempt_dir(self, attempt_id: str) -> AttemptDir:
        return AttemptDir.of(self.root, attempt_id)

    async def run(self, dispatch: Dispatch, on_started: OnStarted) -> AttemptResult:
        home = self.attempt_dir(dispatch.attempt_id)
        recorded = home.recorded()
        if recorded is not None:
            if recorded.exit_code is not None:
                await on_started()  # it ran, though this runner never saw it start
            return recorded
        # The operator's WEIR_TASK_TIMEOUT is a ceiling: a spec's longer `timeout` cannot hold
        # a runner's slot past it (the worker enforces a shorter one of the task's own).
        ceiling = self.containment.timeout
        try:
            async with asyncio.timeout(ceiling):
                result = await self._resume(dispatch, home, on_started)
                if result is None:
                    result = await self._run_fresh(dispatch, home, on_started)
        except TimeoutError:
            asked = dispatch.task.timeout
            result = AttemptResult(
                None,
                ErrorType.TIMEOUT,
                f'task "{dispatch.task.name}" ran for {ceiling:g}s, the longest this runner '
                "lets a task run (WEIR_TASK_TIMEOUT)"
                + (
                    f"; its own timeout of {asked:g}s is longer than that"
                    if asked is not None
                    else ": give it a shorter `timeout`, or ask the operator for a longer one"
                ),
            )
        home.record(result)
        return result

    async def _resume(
        self, dispatch: Dispatch, home: AttemptDir, on_started: OnStarted
    ) -> AttemptResult | None:
        """The attempt's process started by an earlier runner: its recorded exit code, or,
        while it still runs, adopt it and wait. None when there is nothing to resume."""
        exit_file = home.exit_file
        if not exit_file.exists():
            group = read_pid(home.supervisor_pid)
            if group is None or not group_alive(group):
                return None
            await on_started()
            try:
                while group_alive(group) and not exit_file.exists():
                    await asyncio.sleep(ADOPT_POLL_SECONDS)
            except asyncio.CancelledError:
                await _stop_attempt(home, group)
                raise
            if not exit_file.exists():
                return None  # it died without finishing: run it again
        else:
            await on_started()  # it ran and ended under an earlier runner
        code = int(exit_file.read_text().strip() or "1")
        return await self._after_exit(dispatch, home, code)

    async def _run_fresh(
        self, dispatch: Dispatch, home: AttemptDir, on_started: OnStarted
    ) -> AttemptResult:
        self._stop_older_attempts(dispatch)
        if home.path.exists():  # an earlier run of this attempt was interrupted: start clean
            shutil.rmtree(home.path)
        work = home.work
        self.root.mkdir(parents=True, exist_ok=True)
        home.path.mkdir(mode=0o711)  # the task may reach what it owns here, and list nothing
        work.mkdir(mode=0o700)
        self._give_to_task(work, home.snooze)
        task = dispatch.task
        absolute = _absolute_paths(dispatch)
        problem = self._check_paths(dispatch, bool(absolute) and await _sandbox_available())
        if problem:
            return AttemptResult(None, ErrorType.EXECUTOR, problem)
        env, problem = await self._environment(dispatch, home)
        if problem:  # a secret that cannot be read: no other attempt would do better
            return AttemptResult(None, ErrorType.SECRET, problem)
        failed = await self._place_inputs(dispatch, home)
        if failed is not None:
            return failed
        problem = _check_program(task.cmd[0], env, work, task.name)
        if problem:
            return AttemptResult(None, ErrorType.EXECUTOR, problem)
        argv = list(task.cmd)
        if absolute:  # files of the attempt mounted at the task's absolute paths
            inputs = {posixpath.normpath(i.path) for i in task.inputs}
            mounts = []
            for path in absolute:
                host = _host_path(dispatch, home, path)
                assert host is not None
                if path not in inputs:
                    create_placeholder(host)
                mounts.append(sandbox.Mount(host, path))
            root = home.sandbox_root
            root.mkdir()
            self._give_to_task(root, home.sandbox_paths)
            argv = await asyncio.to_thread(sandbox.wrap, argv, mounts, str(work), root)
        instructions = self._instructions(dispatch, argv, env, work)
        with open(home.supervisor_log, "wb") as own_errors:
            proc = await asyncio.create_subprocess_exec(
                *supervisor_argv(home.path),
                cwd=home.path,
                env=SUPERVISOR_ENV,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=own_errors,
                start_new_session=True,
            )
        assert proc.stdin is not None
        proc.stdin.write(msgspec.json.encode(instructions))
        proc.stdin.close()
        await on_started()
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            await _stop_attempt(home, proc.pid)
            await proc.wait()
            raise
        recorded = _recorded_exit(home)
        if recorded is None:
            log = home.supervisor_log.read_text(errors="replace").strip()[-500:]
            return AttemptResult(
                None,
                ErrorType.EXECUTOR,
                f'task "{task.name}": its supervisor ended ({code}) without recording an exit '
                f"code{': ' + log if log else ''}",
            )
        return await self._after_exit(dispatch, home, recorded)

    def _give_to_task(self, *paths: Path) -> None:
        """Make what the task writes (its working directory, its snooze file) its own."""
        user = self.containment.user
        for path in paths:
            if not path.exists():
                path.touch(mode=0o600)
            if user is not None:
                os.chown(path, user.uid, user.gid)

    def _instructions(
        self, dispatch: Dispatch, argv: list[str], env: dict[str, str], work: Path
    ) -> dict[str, object]:
        """What the supervisor needs to start and contain the task (see supervisor.py)."""
        held = self.containment
        user = held.user
        return {
            "argv": argv,
            "env": env,
            "cwd": str(work),
            "uid": user.uid if user else None,
            "gid": user.gid if user else None,
            "memory_max": held.memory_max,
            "pids_max": held.pids_max,
            "cpu_seconds": held.cpu_seconds,
            "log_max": held.log_max,
            "cgroup": str(held.cgroup / dispatch.attempt_id) if held.cgroup else None,
            "grace": KILL_GRACE_SECONDS,
        }

    def _stop_older_attempts(self, dispatch: Dispatch) -> None:
        """Fence: an earlier attempt of this task that an earlier runner left running (it was
        declared lost meanwhile) must not run beside this one."""
        prefix = dispatch.attempt_id.removesuffix(str(dispatch.attempt))
        for path in self.root.glob(f"{glob.escape(prefix)}*"):
            if path.name == dispatch.attempt_id or not path.name[len(prefix) :].isdigit():
                continue
            sibling = AttemptDir(path)
            group = read_pid(sibling.supervisor_pid)
            if group is not None and group_alive(group) and not sibling.exit_file.exists():
                for pid in (group, read_pid(sibling.task_pid)):
                    if pid is not None:  # the task at once, its supervisor (and leftovers)
                        signal_group(pid, signal.SIGKILL if pid != group else signal.SIGTERM)

    async def _after_exit(self, dispatch: Dispatch, home: AttemptDir, code: int) -> AttemptResult:
        task = dispatch.task
        if code == sandbox.SETUP_FAILED and _absolute_paths(dispatch):
            message = _failure_message(task.name, code, home.stderr)
            if sandbox.SETUP_FAILED_MESSAGE in message:
                return AttemptResult(
                    None,
                    ErrorType.EXECUTOR,
                    f'task "{task.name}": its sandbox could not be set up, so it did not run '
                    f"({message.partition('; stderr ends: ')[2]})",
                )
        if code != 0:
            message = _failure_message(task.name, code, home.stderr)
            return AttemptResult(
                code,
                ErrorType.EXIT_CODE,
                redacted(message, await self._secret_values(dispatch)),
                snooze_seconds=_snooze_seconds(home.snooze) if code == SNOOZE_EXIT_CODE else None,
            )
        outputs = await self._keep_outputs(dispatch, home)
        if isinstance(outputs, str):
            return AttemptResult(code, ErrorType.EXECUTOR, outputs)
        return AttemptResult(0, outputs=outputs)

    def _check_paths(self, dispatch: Dispatch, sandboxed: bool) -> str | None:
        task = dispatch.task
        if not _absolute_paths(dispatch) or sandboxed:
            return None
        kind, path = next(
            (kind, item.path)
            for kind, items in (("input", task.inputs), ("output", task.outputs))
            for item in items
            if PurePosixPath(item.path).is_absolute()
        )
        return (
            f'task "{task.name}": {kind} path {path!r} is absolute; the local executor puts '
            "absolute paths only in a sandbox (its own user and mount namespaces), which this "
            "machine does not allow (`unshare --user --map-root-user --mount true` fails), and "
            "never writes outside the attempt's directory: use a relative path, or the "
            "kubernetes executor"
        )

    async def _environment(
        self, dispatch: Dispatch, home: AttemptDir
    ) -> tuple[dict[str, str], str | None]:
        env = {k: os.environ[k] for k in PASSED_THROUGH_ENV if k in os.environ}
        env.update(
            WEIR_FLOW_ID=dispatch.flow_id,
            WEIR_TASK=dispatch.task.name,
            WEIR_ATTEMPT=str(dispatch.attempt),
            WEIR_ATTEMPT_ID=dispatch.attempt_id,
            WEIR_WORKDIR=str(home.work),
            WEIR_SNOOZE_FILE=str(home.snooze),
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

    async def _secret_values(self, dispatch: Dispatch) -> list[str]:
        """The values of the task's `fromSecret` variables, to keep them out of what the
        event log says of the attempt."""
        values = []
        for var in dispatch.task.env:
            if var.from_secret is not None:
                value, _ = await self._secret(var.from_secret)
                if value:
                    values.append(value)
        return values

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
                    if env_secret(key) is None:
                        return None, f'secret "{name}": {exc}'
                else:
                    try:
                        return value.decode(), None
                    except UnicodeDecodeError:
                        return None, f'secret "{name}", which is not UTF-8 text'
        from_env = env_secret(key)
        if from_env is not None:
            return from_env, None
        return None, (
            f'secret "{name}", which does not exist (store it with `weir secret set {name}`, '
            f"or set {key} in the runner's environment)"
        )

    def _no_data_plane(self, dispatch: Dispatch) -> str:
        return (
            f'task "{dispatch.task.name}": this runner has no artifact store (NATS) configured, '
            "so it cannot move inputs and outputs"
        )

    async def _place_inputs(self, dispatch: Dispatch, home: AttemptDir) -> AttemptResult | None:
        """Download the inputs, each checked against the digest the log recorded for it;
        the failure that stops the attempt, if any."""
        task = dispatch.task
        if not task.inputs:
            return None
        if self.data is None:
            return AttemptResult(None, ErrorType.EXECUTOR, self._no_data_plane(dispatch))
        expected = {digest.name: digest for digest in dispatch.input_digests}
        async with self.data.session() as js:
            store = self.data.artifacts(js)
            for item in task.inputs:
                producer_flow = dispatch.input_flows.get(item.from_, dispatch.flow_id)
                target = _host_path(dispatch, home, item.path)
                if target is None:
                    return AttemptResult(
                        None,
                        ErrorType.EXECUTOR,
                        f'task "{task.name}": input path {item.path!r} leaves the work dir',
                    )
                try:
                    await store.download(
                        producer_flow, item.from_, target, expected.get(item.from_)
                    )
                except ArtifactNotFound:
                    return AttemptResult(
                        None,
                        ErrorType.EXECUTOR,
                        f'task "{task.name}": input "{item.from_}" (for {item.path!r}) was not '
                        f"found: flow {producer_flow} has no such output in {store.location}",
                    )
                except ArtifactIntegrityError as exc:
                    return AttemptResult(
                        None, ErrorType.ARTIFACT_INTEGRITY, f'task "{task.name}": input: {exc}'
                    )
                except ArtifactError as exc:
                    return AttemptResult(
                        None, ErrorType.EXECUTOR, f'task "{task.name}": input "{item.from_}": {exc}'
                    )
        return None

    async def _keep_outputs(
        self, dispatch: Dispatch, home: AttemptDir
    ) -> str | tuple[OutputDigest, ...]:
        """Upload the outputs; their digests as uploaded, or why they could not be."""
        task = dispatch.task
        for item in task.outputs:
            source = _host_path(dispatch, home, item.path)
            if source is None or not source.is_file():
                return (
                    f'task "{task.name}": output "{item.name}" expected a file at '
                    f"{item.path!r} in the task's working directory, but there is none"
                )
            if PurePosixPath(item.path).is_absolute() and never_written(source):
                return (
                    f'task "{task.name}": output "{item.name}" expected the task to write '
                    f"{item.path!r}, but it never did"
                )
        if not task.outputs:
            return ()
        if self.data is None:
            return self._no_data_plane(dispatch)
        digests: list[OutputDigest] = []
        async with self.data.session() as js:
            store = self.data.artifacts(js)
            for item in task.outputs:
                source = _host_path(dispatch, home, item.path)
                assert source is not None
                try:
                    stored = await store.upload(dispatch.flow_id, item.name, source)
                except ArtifactError as exc:
                    return f'task "{task.name}": output "{item.name}": {exc}'
                digests.append(OutputDigest(name=item.name, size=stored.size, sha256=stored.sha256))
        return tuple(digests)


def _inside(work: Path, relative: str) -> Path | None:
    target = (work / relative).resolve()
    return target if target.is_relative_to(work.resolve()) else None


def _absolute_paths(dispatch: Dispatch) -> dict[str, str]:
    """Each absolute input or output path of the task -> its file in the attempt's
    `paths` directory, mounted at that path in the task's sandbox."""
    task = dispatch.task
    files: dict[str, str] = {}
    for given in [i.path for i in task.inputs] + [o.path for o in task.outputs]:
        path = posixpath.normpath(given)
        if PurePosixPath(path).is_absolute() and path not in files:
            files[path] = f"f{len(files)}-{_SAFE_NAME.sub('_', PurePosixPath(path).name)}"
    return files


async def _sandbox_available() -> bool:
    return await asyncio.to_thread(sandbox.available)


def _host_path(dispatch: Dispatch, home: AttemptDir, path: str) -> Path | None:
    """Where the task's `path` is on this machine: in the working directory when relative,
    in the attempt's `paths` directory when absolute (None: it leaves the working dir)."""
    if PurePosixPath(path).is_absolute():
        return home.sandbox_paths / _absolute_paths(dispatch)[posixpath.normpath(path)]
    return _inside(home.work, path)


_SIGNALS = {s.value: s.name for s in signal.Signals}


async def _stop_attempt(home: AttemptDir, group: int) -> None:
    """Ask the attempt's supervisor to stop it (SIGTERM to everything the task started,
    SIGKILL after a grace period); kill the task's group and the supervisor if it does not
    answer in time."""
    signal_group(group, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + KILL_GRACE_SECONDS + 5.0
    while group_alive(group) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    for pid in (read_pid(home.task_pid), group):
        if pid is not None:
            signal_group(pid, signal.SIGKILL)


def _recorded_exit(home: AttemptDir) -> int | None:
    try:
        return int(home.exit_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _check_program(program: str, env: dict[str, str], work: Path, task: str) -> str | None:
    """A clear error before anything starts when the program cannot be found or run."""
    if "/" in program:
        path = (work / program) if not program.startswith("/") else Path(program)
        if not path.is_file():
            return f'task "{task}": cannot start {program!r}: no such file'
        if not os.access(path, os.X_OK):
            return f'task "{task}": cannot start {program!r}: permission denied'
        return None
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        return f'task "{task}": cannot start {program!r}: not found on PATH'
    return None


def _snooze_seconds(path: Path) -> float | None:
    """The delay a snoozing task wrote to $WEIR_SNOOZE_FILE, if any (bounded to a day)."""
    try:
        with open(path, "rb") as handle:  # written by the task: read no more than a number
            value = float(handle.read(SNOOZE_READ_BYTES).decode().strip())
    except (OSError, ValueError):
        return None
    return min(max(value, 0.0), 86_400.0) if value == value else None


SECRET_REDACTED = "[secret]"


def redacted(text: str, secrets: list[str]) -> str:
    """`text` with every secret value in it (as it is, and base64 or hex encoded, the forms a
    careless `echo` or a debug print takes) replaced by `[secret]`.

    This keeps a task's own stderr from carrying its secrets into `task_failed`, which every
    reader of the flow's events sees. It cannot stop a task that means to leak a secret it
    was given (split, reversed, sent elsewhere): secrets are for the flows of trusted
    submitters (docs/security.md)."""
    forms = set()
    for value in secrets:
        if len(value) < 4:  # too short to replace without mangling the message
            continue
        raw = value.encode()
        forms |= {value, base64.b64encode(raw).decode().rstrip("="), raw.hex(), raw.hex().upper()}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, SECRET_REDACTED)
    return text


def _failure_message(task: str, code: int, stderr: Path) -> str:
    if code < 0:
        head = f'task "{task}" was killed by signal {-code}'
    elif code > 128 and code - 128 in _SIGNALS:
        head = f'task "{task}" exited with code {code} ({_SIGNALS[code - 128]})'
    else:
        head = f'task "{task}" exited with code {code}'
    if not stderr.exists():
        return head
    size = stderr.stat().st_size
    with open(stderr, "rb") as handle:
        handle.seek(max(0, size - STDERR_TAIL_BYTES))
        tail = handle.read().decode(errors="replace").strip()
    if not tail:
        return head
    marker = "…" if size > STDERR_TAIL_BYTES else ""
    return f"{head}; stderr ends: {marker}{tail}"
