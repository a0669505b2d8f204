"""The shell of a condition over an upstream output, on the in-memory data layer with the real
FanOutIO: the read survives a store outage and a restart, happens once, and an output the
store does not hold fails the task with the reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import cast

from weir.artifacts import ArtifactInfo, ArtifactNotFound, Artifacts
from weir_proto.messages import OutputDigest
from weir_scheduler.fanout_io import FanOutIO
from weir_scheduler.timers import TIMER_CLAIM_SECONDS, TimerFirer

from tests.flows import task
from tests.unit.test_scheduler_shell import Shell


class Stored:
    """Stands for an artifact store holding `objects` ((flow, name) -> bytes); it cannot be
    reached while `down`."""

    def __init__(self, objects: dict[tuple[str, str], bytes]) -> None:
        self.objects = objects
        self.down = False
        self.reads: list[tuple[str, str]] = []

    async def download(
        self, flow_id: str, name: str, target: Path, expected: OutputDigest | None = None
    ) -> ArtifactInfo:
        self.reads.append((flow_id, name))
        if self.down:
            raise ConnectionError("object store unreachable")
        data = self.objects.get((flow_id, name))
        if data is None:
            raise ArtifactNotFound(f"{flow_id}/{name} not found")
        target.write_bytes(data)
        return ArtifactInfo(flow_id, name, len(data), "00", None)


SPEC = {
    "name": "release",
    "id": "rel-1",
    "tasks": [
        task("check", outputs=[{"name": "decision", "path": "d.txt"}]),
        task("deploy", depends=["check"], when='tasks.check.outputs.decision == "go"'),
    ],
}


async def checked(shell: Shell) -> str:
    """Submit SPEC and report `check` succeeded with its output uploaded."""
    flow_id = await shell.submit(SPEC)
    (dispatch,) = await shell.dispatches()
    await shell.succeeded(dispatch, [OutputDigest(name="decision", size=3, sha256="00")])
    return flow_id


async def test_the_read_survives_an_outage_and_a_restart_and_is_done_once() -> None:
    shell = Shell()
    flow_id = await checked(shell)
    store = Stored({(flow_id, "decision"): b"go\n"})
    store.down = True
    reader = FanOutIO(shell.store, cast(Artifacts, store), max_tasks=100)
    assert await TimerFirer(shell.store, shell.commands, fanout=reader).fire_due() == 1
    assert (await shell.statuses(flow_id))["deploy"] == "pending"  # still waiting

    store.down = False
    shell.clock.now += timedelta(seconds=TIMER_CLAIM_SECONDS + 1)
    restarted = TimerFirer(shell.store, shell.commands, fanout=reader)
    assert await restarted.fire_due() == 1
    assert (await shell.statuses(flow_id))["deploy"] == "dispatched"
    assert store.reads == [(flow_id, "decision"), (flow_id, "decision")]
    assert await restarted.fire_due() == 0, "the read is not done twice"


async def test_an_output_the_store_does_not_hold_fails_the_task_with_the_reason() -> None:
    shell = Shell()
    flow_id = await checked(shell)
    reader = FanOutIO(shell.store, cast(Artifacts, Stored({})), max_tasks=100)
    assert await TimerFirer(shell.store, shell.commands, fanout=reader).fire_due() == 1
    view = await shell.store.get(flow_id)
    assert view is not None
    deploy = next(t for t in view.tasks if t.name == "deploy")
    assert (deploy.status, deploy.error_type) == ("failed", "condition")
    assert deploy.error_message == (
        'task "deploy": when: output "decision" of task "check" was not stored'
    )
    assert view.status == "failed"


async def test_a_value_that_does_not_hold_skips_the_task_with_the_condition() -> None:
    shell = Shell()
    flow_id = await checked(shell)
    store = Stored({(flow_id, "decision"): b'"stop"'})
    reader = FanOutIO(shell.store, cast(Artifacts, store), max_tasks=100)
    assert await TimerFirer(shell.store, shell.commands, fanout=reader).fire_due() == 1
    view = await shell.store.get(flow_id)
    assert view is not None and view.status == "succeeded"
    deploy = next(t for t in view.tasks if t.name == "deploy")
    assert deploy.status == "skipped"
    assert deploy.error_message == 'condition is false: tasks.check.outputs.decision == "go"'
