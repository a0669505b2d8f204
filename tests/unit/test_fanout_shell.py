"""The fan-out's shell on the in-memory data layer: a mapped task's `fanout` timer survives
a restart and a store that cannot be reached, and fires the read of its list once."""

from __future__ import annotations

from datetime import timedelta

from weir_proto.messages import OutputDigest
from weir_scheduler.decider import Command, Expand
from weir_scheduler.timers import TIMER_CLAIM_SECONDS, TimerFirer

from tests.flows import task
from tests.unit.test_scheduler_shell import Shell


class Reader:
    """Stands for FanOutIO: the list is ["a", "b"]; the store fails while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.reads: list[tuple[str, str, int]] = []

    async def command(self, flow_id: str, task: str, phase: int) -> Command | None:
        self.reads.append((flow_id, task, phase))
        if self.down:
            raise ConnectionError("object store unreachable")
        return Expand(task, items=("a", "b"))


async def test_a_waiting_mapped_task_is_expanded_after_an_outage_and_a_restart() -> None:
    shell = Shell()
    spec = {
        "name": "m",
        "id": "m-1",
        "tasks": [
            task("ls", outputs=[{"name": "files", "path": "f.json"}]),
            task("p", "echo", "{{ item }}", depends=["ls"], map={"over": "files"}),
        ],
    }
    flow_id = await shell.submit(spec)
    (dispatch,) = await shell.dispatches()
    await shell.succeeded(dispatch, [OutputDigest(name="files", size=9, sha256="00")])

    reader = Reader()
    reader.down = True
    assert await TimerFirer(shell.store, shell.commands, fanout=reader).fire_due() == 1
    assert (await shell.statuses(flow_id))["p"] == "pending"  # the read failed: still waiting

    # A restarted scheduler (a new firer) fires the same timer once its claim has lapsed.
    reader.down = False
    shell.clock.now += timedelta(seconds=TIMER_CLAIM_SECONDS + 1)
    restarted = TimerFirer(shell.store, shell.commands, fanout=reader)
    assert await restarted.fire_due() == 1
    assert reader.reads == [(flow_id, "p", 0), (flow_id, "p", 0)]
    statuses = await shell.statuses(flow_id)
    assert (statuses["p[0]"], statuses["p[1]"]) == ("dispatched", "dispatched")
    assert await restarted.fire_due() == 0, "the read is not done twice"
