"""The task's files: where each input and output path is on this machine (in the working
directory when relative, in the attempt's `paths` directory, mounted in a sandbox, when
absolute), inputs downloaded before the command starts and outputs uploaded after exit 0.

Inputs come from the flow that produced them (`dispatch.input_flows` names an earlier flow
whose outputs a rerun reuses), each checked against the digest the log recorded for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import stat
from pathlib import Path, PurePosixPath

from weir.artifacts import ArtifactError, ArtifactIntegrityError, ArtifactNotFound
from weir_proto.errors import WeirException
from weir_proto.messages import Dispatch, ErrorType, OutputDigest

from weir_runner import sandbox
from weir_runner.artifacts import DataPlane, untouched
from weir_runner.attempt_dir import AttemptDir
from weir_runner.executors.base import AttemptResult

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _inside(work: Path, relative: str) -> Path | None:
    target = (work / relative).resolve()
    return target if target.is_relative_to(work.resolve()) else None


def absolute_paths(dispatch: Dispatch) -> dict[str, str]:
    """Each absolute input or output path of the task -> its file in the attempt's
    `paths` directory, mounted at that path in the task's sandbox."""
    task = dispatch.task
    files: dict[str, str] = {}
    for given in [i.path for i in task.inputs] + [o.path for o in task.outputs]:
        path = posixpath.normpath(given)
        if PurePosixPath(path).is_absolute() and path not in files:
            files[path] = f"f{len(files)}-{_SAFE_NAME.sub('_', PurePosixPath(path).name)}"
    return files


async def sandbox_available() -> bool:
    return await asyncio.to_thread(sandbox.available)


def host_path(dispatch: Dispatch, home: AttemptDir, path: str) -> Path | None:
    """Where the task's `path` is on this machine: in the working directory when relative,
    in the attempt's `paths` directory when absolute (None: it leaves the working dir)."""
    if PurePosixPath(path).is_absolute():
        return home.sandbox_paths / absolute_paths(dispatch)[posixpath.normpath(path)]
    return _inside(home.work, path)


def check_paths(dispatch: Dispatch, sandboxed: bool) -> str | None:
    """Why the task cannot run here: an absolute path on a machine without a sandbox."""
    task = dispatch.task
    if not absolute_paths(dispatch) or sandboxed:
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


def _no_data_plane(dispatch: Dispatch) -> str:
    return (
        f'task "{dispatch.task.name}": this runner has no artifact store (NATS) configured, '
        "so it cannot move inputs and outputs"
    )


async def place_inputs(
    dispatch: Dispatch, home: AttemptDir, data: DataPlane | None
) -> AttemptResult | None:
    """Download the inputs, each checked against the digest the log recorded for it;
    the failure that stops the attempt, if any."""
    task = dispatch.task
    if not task.inputs:
        return None
    if data is None:
        return AttemptResult(None, ErrorType.EXECUTOR, _no_data_plane(dispatch))
    expected = {digest.name: digest for digest in dispatch.input_digests}
    async with data.session() as js:
        store = data.artifacts(js)
        for item in task.inputs:
            producer_flow = dispatch.input_flows.get(item.from_, dispatch.flow_id)
            target = host_path(dispatch, home, item.path)
            if target is None:
                return AttemptResult(
                    None,
                    ErrorType.EXECUTOR,
                    f'task "{task.name}": input path {item.path!r} leaves the work dir',
                )
            try:
                await store.download(producer_flow, item.from_, target, expected.get(item.from_))
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


class _NotAFile(WeirException):
    """An output path that is no regular file of the task's own directories."""


def open_output(base: Path, relative: str) -> int:
    """A read-only descriptor of the regular file `relative` names below `base`, opened
    one component at a time without following a symbolic link anywhere, and refused when
    it is not a regular file or has another name elsewhere (a hard link). The runner reads
    outputs as root from directories the task wrote: a link planted there must never make
    it read (and upload) a file of its own, such as its /proc/<pid>/environ."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part in ("", ".", "..", "/") for part in parts):
        raise _NotAFile(relative)
    at = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=at
                )
            except OSError as exc:
                raise _NotAFile(relative) from exc
            os.close(at)
            at = inner
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # (a FIFO waits)
        try:
            fd = os.open(parts[-1], flags, dir_fd=at)
        except OSError as exc:
            raise _NotAFile(relative) from exc
    finally:
        os.close(at)
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_nlink != 1:
        os.close(fd)
        raise _NotAFile(relative)
    return fd


def _output_file(dispatch: Dispatch, home: AttemptDir, path: str) -> int:
    """`open_output` of the task's output `path`, where `host_path` puts it."""
    if PurePosixPath(path).is_absolute():
        return open_output(home.sandbox_paths, absolute_paths(dispatch)[posixpath.normpath(path)])
    return open_output(home.work, posixpath.normpath(path))


async def keep_outputs(
    dispatch: Dispatch, home: AttemptDir, data: DataPlane | None
) -> str | tuple[OutputDigest, ...]:
    """Upload the outputs; their digests as uploaded, or why they could not be. Each is
    read through a descriptor `open_output` gave (its `/proc/self/fd` name is the very file
    opened, whatever the task's directories hold by the time the upload reads it)."""
    task = dispatch.task
    fds: list[int] = []
    with contextlib.ExitStack() as opened:
        for item in task.outputs:
            try:
                fd = _output_file(dispatch, home, item.path)
            except _NotAFile:
                return (
                    f'task "{task.name}": output "{item.name}" expected a file at '
                    f"{item.path!r} in the task's working directory, but there is none (a "
                    "symbolic link, a directory or a file with another name is no output)"
                )
            opened.callback(os.close, fd)
            fds.append(fd)
            if PurePosixPath(item.path).is_absolute() and untouched(os.fstat(fd)):
                return (
                    f'task "{task.name}": output "{item.name}" expected the task to write '
                    f"{item.path!r}, but it never did"
                )
        if not task.outputs:
            return ()
        if data is None:
            return _no_data_plane(dispatch)
        digests: list[OutputDigest] = []
        async with data.session() as js:
            store = data.artifacts(js)
            for item, fd in zip(task.outputs, fds, strict=True):
                source = Path(f"/proc/self/fd/{fd}")
                try:
                    stored = await store.upload(dispatch.flow_id, item.name, source)
                except ArtifactError as exc:
                    return f'task "{task.name}": output "{item.name}": {exc}'
                digests.append(OutputDigest(name=item.name, size=stored.size, sha256=stored.sha256))
        return tuple(digests)
