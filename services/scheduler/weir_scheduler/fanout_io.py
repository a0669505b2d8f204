"""FanOutIO: the artifact reads and writes a mapped task needs, done for the decider.

A `fanout` timer (made when a mapped task starts waiting, so a crash loses nothing) wakes
it for one task: it reads the list the task maps over and answers `Expand`, or, once every
instance succeeded, stores each of the task's outputs as the JSON list of its instances'
parts (each part as JSON when it parses, else as text) and answers `Gather`. The same timer
reads the outputs a task's `when` condition names and answers `ReadCondition`
(`decider/gates.py`). A store that cannot be reached raises: the timer fires again after
its claim lapses.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from weir.artifacts import ArtifactIntegrityError, ArtifactNotFound, Artifacts
from weir_proto.messages import OutputDigest

from weir_scheduler.decider import Command, Expand, FoldedFlow, Gather, ReadCondition
from weir_scheduler.decider.fanout import (
    CONDITION_PHASE,
    GATHER_PHASE,
    expansion,
    gathered,
    oversized,
)
from weir_scheduler.decider.gates import VALUE_BYTES_MAX, output_value, to_read
from weir_scheduler.store import EventStore


class FanOutIO:
    """Answers a mapped task's `fanout` timer with what the artifact store holds."""

    def __init__(self, store: EventStore, artifacts: Artifacts, max_tasks: int) -> None:
        self.store = store
        self.artifacts = artifacts
        self.max_tasks = max_tasks

    async def command(self, flow_id: str, task: str, phase: int) -> Command | None:
        """What the shell found for mapped `task` in `phase`, as a command (None: the task
        no longer waits)."""
        flow = await self.store.load(flow_id)
        if flow.plan is None or task not in flow.fanout:
            return None
        with tempfile.TemporaryDirectory(prefix="weir-fanout-") as scratch:
            if phase == GATHER_PHASE:
                return await self._gather(flow, task, Path(scratch))
            if phase == CONDITION_PHASE:
                return await self._read_condition(flow, task, Path(scratch))
            spec = flow.plan.tasks[task]
            assert spec.map is not None
            over = spec.map.over
            digest = flow.output_digest(over)
            too_big = oversized(flow, task, digest.size) if digest is not None else None
            if too_big is not None:
                return too_big  # not even downloaded
            target = Path(scratch) / "list.json"
            # A rerun reuses a succeeded producer's output where that run stored it.
            holder = flow.rerun_of if flow.plan.producers[over] in flow.reused else flow_id
            try:
                await self.artifacts.download(holder or flow_id, over, target, expected=digest)
            except ArtifactNotFound:
                return Expand(task, error=f'task "{task}": map.over output "{over}" was not stored')
            except ArtifactIntegrityError as exc:
                return Expand(task, error=f'task "{task}": map.over output "{over}": {exc}')
            return expansion(flow, task, target.read_bytes(), self.max_tasks)

    async def _read_condition(self, flow: FoldedFlow, task: str, scratch: Path) -> ReadCondition:
        assert flow.plan is not None
        values: list[tuple[str, Any]] = []
        for producer, output in to_read(flow, task):
            what = f'task "{task}": when: output "{output}" of task "{producer}"'
            digest = flow.output_digest(output)
            if digest is not None and digest.size > VALUE_BYTES_MAX:  # not even downloaded
                limit = f"the limit is {VALUE_BYTES_MAX:,}"
                return ReadCondition(task, error=f"{what} is {digest.size:,} bytes; {limit}")
            holder = flow.rerun_of if producer in flow.reused else flow.id
            target = scratch / "value"
            try:
                await self.artifacts.download(holder or flow.id, output, target, expected=digest)
            except ArtifactNotFound:
                return ReadCondition(task, error=f"{what} was not stored")
            except ArtifactIntegrityError as exc:
                return ReadCondition(task, error=f"{what}: {exc}")
            value, problem = output_value(task, output, target.read_bytes())
            if problem is not None:
                return ReadCondition(task, error=problem)
            values.append((output, value))
            target.unlink()
        return ReadCondition(task, values=tuple(values))

    async def _gather(self, flow: FoldedFlow, task: str, scratch: Path) -> Gather:
        flow_id = flow.id
        digests: list[OutputDigest] = []
        for name, parts in gathered(flow, task):
            values: list[Any] = []
            for part in parts:
                target = scratch / "part"
                try:
                    await self.artifacts.download(
                        flow_id, part, target, expected=flow.output_digest(part)
                    )
                except ArtifactNotFound:
                    return Gather(task, error=f'task "{task}": output "{part}" was not stored')
                except ArtifactIntegrityError as exc:
                    return Gather(task, error=f'task "{task}": output "{part}": {exc}')
                values.append(_part_value(target.read_bytes()))
                target.unlink()
            whole = scratch / name
            whole.write_text(json.dumps(values, separators=(",", ":")))
            info = await self.artifacts.upload(flow_id, name, whole)
            digests.append(OutputDigest(name=name, size=info.size, sha256=info.sha256))
        return Gather(task, outputs=tuple(digests))


def _part_value(data: bytes) -> Any:
    """A part as JSON when it is JSON, else as text (a trailing newline dropped)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return data.decode("utf-8", errors="replace").removesuffix("\n")
