"""LocalExecutor: runs each attempt under its supervisor in its own directory, resumes or
adopts one an earlier runner started, and turns how it ended into an `AttemptResult`."""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import shutil
from pathlib import Path

import msgspec
from nats.js import JetStreamContext
from weir.config import (
    TASK_LOG_MAX_DEFAULT,
    TASK_MEMORY_MAX_DEFAULT,
    TASK_PIDS_MAX_DEFAULT,
    TASK_TIMEOUT_DEFAULT,
    Settings,
)
from weir_proto.messages import SNOOZE_EXIT_CODE, Dispatch, ErrorType

from weir_runner import sandbox
from weir_runner.artifacts import DataPlane, create_placeholder
from weir_runner.attempt_dir import AttemptDir
from weir_runner.containment import Containment, TaskUser
from weir_runner.executors.base import AttemptResult, Executor, OnStarted
from weir_runner.executors.local.environment import redacted, secret_values, task_environment
from weir_runner.executors.local.files import (
    absolute_paths,
    check_paths,
    host_path,
    keep_outputs,
    place_inputs,
    sandbox_available,
)
from weir_runner.executors.local.process import (
    KILL_GRACE_SECONDS,
    SUPERVISOR_ENV,
    check_program,
    failure_message,
    recorded_exit,
    snooze_seconds,
    stop_attempt,
    stop_older_attempts,
    supervisor_argv,
)
from weir_runner.process_groups import group_alive, read_pid
from weir_runner.supervisor import end_uid
from weir_runner.task_uids import UidLease, UidPool, UidsExhausted

log = logging.getLogger("weir.runner.local")

ADOPT_POLL_SECONDS = 0.1

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
                await stop_attempt(home, group)
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
        """Run the attempt anew, as the uid it takes for its own (see `task_uids.py`) or as
        the task user."""
        pool = self.containment.uids
        if pool is None:
            return await self._start(dispatch, home, on_started, self.containment.user, None)
        try:
            # (not in a thread: a cancel there would lose the lease, and the uid with it)
            lease = take_clean(pool)
        except UidsExhausted as exc:
            return AttemptResult(None, ErrorType.EXECUTOR, f'task "{dispatch.task.name}": {exc}')
        try:
            user = TaskUser(f"uid {lease.uid}", lease.uid, lease.uid)
            return await self._start(dispatch, home, on_started, user, lease)
        finally:
            # Nothing of the uid outlives the attempt (a supervisor that recorded no exit
            # may have died before its own kill), and what the task left in its directories
            # stays its uid's: from now on only the runner passes into the attempt's
            # directory. Then the uid may go to another attempt.
            if not home.exit_file.exists():
                end_uid(lease.uid, lease.uid)
            if home.path.exists():
                home.path.chmod(0o700)
            lease.release()

    async def _start(
        self,
        dispatch: Dispatch,
        home: AttemptDir,
        on_started: OnStarted,
        user: TaskUser | None,
        lease: UidLease | None,
    ) -> AttemptResult:
        stop_older_attempts(self.root, dispatch)
        if home.path.exists():  # an earlier run of this attempt was interrupted: start clean
            shutil.rmtree(home.path)
        work = home.work
        self.root.mkdir(parents=True, exist_ok=True)
        home.path.mkdir(mode=0o711)  # the task may reach what it owns here, and list nothing
        work.mkdir(mode=0o700)  # the runner's until the inputs are in place (see below)
        task = dispatch.task
        absolute = absolute_paths(dispatch)
        problem = check_paths(dispatch, bool(absolute) and await sandbox_available())
        if problem:
            return AttemptResult(None, ErrorType.EXECUTOR, problem)
        env, problem = await task_environment(dispatch, home, self.data)
        if problem:  # a secret that cannot be read: no other attempt would do better
            return AttemptResult(None, ErrorType.SECRET, problem)
        failed = await place_inputs(dispatch, home, self.data)
        if failed is not None:
            return failed
        # Only now the task's: no process of its uid could plant a link in it for the
        # runner, which writes the inputs as root, to follow.
        _give_to_task(user, work, home.snooze)
        problem = check_program(task.cmd[0], env, work, task.name)
        if problem:
            return AttemptResult(None, ErrorType.EXECUTOR, problem)
        argv = list(task.cmd)
        if absolute:  # files of the attempt mounted at the task's absolute paths
            inputs = {posixpath.normpath(i.path) for i in task.inputs}
            mounts = []
            for path in absolute:
                host = host_path(dispatch, home, path)
                assert host is not None
                if path not in inputs:
                    create_placeholder(host)
                mounts.append(sandbox.Mount(host, path))
            root = home.sandbox_root
            root.mkdir()
            _give_to_task(user, root, home.sandbox_paths)
            argv = await asyncio.to_thread(sandbox.wrap, argv, mounts, str(work), root)
        instructions = self._instructions(dispatch, argv, env, work, user, own_uid=bool(lease))
        with open(home.supervisor_log, "wb") as own_errors:
            proc = await asyncio.create_subprocess_exec(
                *supervisor_argv(home.path),
                cwd=home.path,
                env=SUPERVISOR_ENV,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=own_errors,
                start_new_session=True,
                pass_fds=(lease.fd,) if lease else (),  # it holds the uid until it ends
            )
        assert proc.stdin is not None
        proc.stdin.write(msgspec.json.encode(instructions))
        proc.stdin.close()
        try:
            await on_started()
            code = await proc.wait()
        except asyncio.CancelledError:
            await stop_attempt(home, proc.pid)
            await proc.wait()
            raise
        recorded = recorded_exit(home)
        if recorded is None:
            log = home.supervisor_log.read_text(errors="replace").strip()[-500:]
            return AttemptResult(
                None,
                ErrorType.EXECUTOR,
                f'task "{task.name}": its supervisor ended ({code}) without recording an exit '
                f"code{': ' + log if log else ''}",
            )
        return await self._after_exit(dispatch, home, recorded)

    def _instructions(
        self,
        dispatch: Dispatch,
        argv: list[str],
        env: dict[str, str],
        work: Path,
        user: TaskUser | None,
        *,
        own_uid: bool,
    ) -> dict[str, object]:
        """What the supervisor needs to start and contain the task (see supervisor.py)."""
        held = self.containment
        return {
            "argv": argv,
            "env": env,
            "cwd": str(work),
            "uid": user.uid if user else None,
            "gid": user.gid if user else None,
            "own_uid": own_uid,
            "memory_max": held.memory_max,
            "pids_max": held.pids_max,
            "cpu_seconds": held.cpu_seconds,
            "log_max": held.log_max,
            "cgroup": str(held.cgroup / dispatch.attempt_id) if held.cgroup else None,
            "grace": KILL_GRACE_SECONDS,
        }

    async def _after_exit(self, dispatch: Dispatch, home: AttemptDir, code: int) -> AttemptResult:
        task = dispatch.task
        if code == sandbox.SETUP_FAILED and absolute_paths(dispatch):
            message = failure_message(task.name, code, home.stderr)
            if sandbox.SETUP_FAILED_MESSAGE in message:
                return AttemptResult(
                    None,
                    ErrorType.EXECUTOR,
                    f'task "{task.name}": its sandbox could not be set up, so it did not run '
                    f"({message.partition('; stderr ends: ')[2]})",
                )
        if code != 0:
            message = failure_message(task.name, code, home.stderr)
            return AttemptResult(
                code,
                ErrorType.EXIT_CODE,
                redacted(message, await secret_values(dispatch, self.data)),
                snooze_seconds=snooze_seconds(home.snooze) if code == SNOOZE_EXIT_CODE else None,
            )
        outputs = await keep_outputs(dispatch, home, self.data)
        if isinstance(outputs, str):
            return AttemptResult(code, ErrorType.EXECUTOR, outputs)
        return AttemptResult(0, outputs=outputs)


def _give_to_task(user: TaskUser | None, *paths: Path) -> None:
    """Make what the task writes (its working directory, its snooze file) its own."""
    for path in paths:
        if not path.exists():
            path.touch(mode=0o600)
        if user is not None:
            os.chown(path, user.uid, user.gid)


TAKE_TRIES = 5


def take_clean(pool: UidPool) -> UidLease:
    """A uid of `pool` with no process left running: an earlier attempt whose supervisor
    died may have left some, which must not reach this attempt's directory (made the uid's
    next) nor its task. A uid whose leftovers cannot be killed is passed over."""
    for _ in range(TAKE_TRIES):
        lease = pool.take()
        if end_uid(lease.uid, lease.uid):
            return lease
        log.warning(
            "processes of a task uid outlive every kill: passed over", extra={"uid": lease.uid}
        )
        lease.release()
    raise UidsExhausted(
        f"{TAKE_TRIES} uids of WEIR_RUNNER_TASK_UIDS in a row had processes that cannot be killed"
    )
