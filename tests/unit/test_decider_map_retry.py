"""Retrying mapped tasks, decided: an instance runs again alone and its mapped task waits
for its instances again (never reading its list again), a mapped task runs again the
instances that did not succeed, a downstream retry makes a mapped task after the retried one
read its list again and expand anew, and a retry that would do so while instances run is
refused with what to do instead. Every log folds to the live state."""

from __future__ import annotations

from typing import Any

import msgspec
from weir_proto.events import FlowEvent, event_type
from weir_proto.messages import OutputDigest
from weir_proto.spec import FlowSpec
from weir_proto.status import FlowStatus, TaskStatus
from weir_scheduler.data.memory import MemoryData
from weir_scheduler.decider import (
    Expand,
    FireTimer,
    FoldedFlow,
    Gather,
    Retry,
    Submit,
    decide,
    evolve,
    fold,
)
from weir_scheduler.decider.fanout import GATHER_PHASE, due
from weir_scheduler.decider.stepping import retry_refusal
from weir_scheduler.planner import plan
from weir_scheduler.store import Change, Timing, append_batch, sealed

from tests.flows import task
from tests.unit.test_decider import NOW, finished, started

ONCE = {"max_attempts": 1}
MAPPED = [
    task("a", outputs=[{"name": "files", "path": "files.json"}]),
    task("m", depends=["a"], map={"over": "files"}, outputs=[{"name": "rows", "path": "r"}]),
    task("r", depends=["m"], inputs=[{"from": "rows", "path": "rows.json"}]),
]


class Flow:
    """A flow driven one command at a time, its log kept."""

    def __init__(self, tasks: list[dict[str, Any]], **fields: Any) -> None:
        spec = msgspec.convert({"name": "f", "tasks": tasks, **fields}, FlowSpec)
        self.flow = FoldedFlow(id="f1")
        self.log: list[FlowEvent] = []
        self.events: list[FlowEvent] = []
        self.apply(Submit(spec, plan(spec)))

    def apply(self, command: Any) -> list[str]:
        self.events = decide(self.flow, command, NOW)
        for event in self.events:
            self.flow = evolve(self.flow, event)
        self.log.extend(self.events)
        return [event_type(e) for e in self.events]

    def run(self, *names: str, ok: bool = True) -> None:
        for name in names:
            attempt = self.flow.tasks[name].attempt
            self.apply(started(name, attempt))
            self.apply(finished(name, ok, attempt))

    def gather(self, name: str = "m") -> list[str]:
        assert (name, GATHER_PHASE) in due(self.flow)
        return self.apply(Gather(name, (OutputDigest(name="rows", size=2, sha256="00"),)))

    def now(self) -> FlowStatus:
        """The flow's status (a call: each step may change it)."""
        return self.flow.status

    def status(self, *names: str) -> list[str]:
        return [str(self.flow.tasks[n].status) for n in names]

    def attempts(self, *names: str) -> list[int]:
        return [self.flow.tasks[n].attempt for n in names]

    def gathers_and_succeeds(self) -> None:
        """`m` gathers its instances' outputs, `r` runs, the flow succeeds; the log folds
        to the live state."""
        self.gather()
        self.run("r")
        assert self.now() is FlowStatus.SUCCEEDED
        assert self.replays()

    def replays(self) -> bool:
        return fold(self.flow.id, self.log) == self.flow


def failed_instance(*failing: int, count: int = 3) -> Flow:
    """MAPPED over `count` items, whose instances in `failing` failed: a failed flow."""
    spec = [MAPPED[0], {**MAPPED[1], "retry": ONCE}, MAPPED[2]]
    f = Flow(spec)
    f.run("a")
    f.apply(Expand("m", items=tuple(f"x{i}" for i in range(count))))
    for i in range(count):
        f.run(f"m[{i}]", ok=i not in failing)
    return f


def test_a_failed_instance_runs_again_alone_and_its_mapped_task_ends_and_gathers_again() -> None:
    f = failed_instance(1)
    assert f.now() is FlowStatus.FAILED
    assert f.status("m", "r") == ["failed", "skipped"]
    assert f.apply(Retry("m[1]")) == ["task_retried", "task_dispatched"]
    assert f.events[0].tasks == ["m", "r", "m[1]"]  # type: ignore[union-attr]
    assert (f.events[1].task, f.events[1].attempt) == ("m[1]", 2)  # type: ignore[union-attr]
    assert f.now() is FlowStatus.RUNNING and not f.flow.failing
    assert f.status("m", "r") == ["pending", "pending"]
    assert "m" in f.flow.expanded and list(due(f.flow)) == [], "not expanded again"
    f.run("m[1]")
    assert f.gather() == ["task_succeeded", "task_dispatched"]  # `r` gets the whole list
    f.run("r")
    assert f.now() is FlowStatus.SUCCEEDED
    assert f.attempts("m[0]", "m[1]", "m[2]") == [1, 2, 1], "the others did not run again"
    assert [e for e in f.log if event_type(e) == "task_expanded"] == f.log[4:5]
    assert f.replays()


def test_a_retried_instance_gets_a_new_attempt_budget() -> None:
    retry = {"max_attempts": 2, "backoff": {"strategy": "constant", "base": 1, "jitter": None}}
    f = Flow([MAPPED[0], {**MAPPED[1], "retry": retry}, MAPPED[2]])
    f.run("a")
    f.apply(Expand("m", items=("x",)))
    f.run("m[0]", ok=False)
    assert f.flow.tasks["m[0]"].status is TaskStatus.RETRYING
    f.apply(FireTimer("retry", "m[0]", 1))
    f.run("m[0]", ok=False)
    assert f.now() is FlowStatus.FAILED
    f.apply(Retry("m[0]"))
    f.run("m[0]", ok=False)  # attempt 3: the first failure since the retry, one left
    assert f.flow.tasks["m[0]"].status is TaskStatus.RETRYING
    assert f.replays()


def test_an_instance_retried_while_a_sibling_stays_failed_runs_but_its_task_fails_again() -> None:
    f = failed_instance(1, 2)
    f.apply(Retry("m[1]"))
    assert f.events[0].tasks == ["m", "r", "m[1]"]  # type: ignore[union-attr]
    assert f.flow.failing  # `m[2]` stays failed: `r` is skipped again at once
    assert f.status("r") == ["skipped"]
    f.run("m[1]")
    assert f.status("m", "m[1]", "m[2]") == ["failed", "succeeded", "failed"]
    assert f.flow.tasks["m"].error_message == '1 of 3 instances failed: "m[2]"'
    assert f.now() is FlowStatus.FAILED
    # Then the other one: nothing stays failed, and `r` runs.
    assert f.apply(Retry("m[2]")) == ["task_retried", "task_dispatched"]
    f.run("m[2]")
    f.gathers_and_succeeds()


def test_an_instance_retried_while_its_siblings_run_counts_among_them_again() -> None:
    spec = [MAPPED[0], {**MAPPED[1], "retry": ONCE}, MAPPED[2]]
    f = Flow(spec)
    f.run("a")
    f.apply(Expand("m", items=("x", "y")))
    f.apply(started("m[1]"))
    f.run("m[0]", ok=False)  # `m[1]` still runs: `m` waits for it
    assert f.status("m", "r") == ["pending", "skipped"] and f.flow.fanout["m"].left == 1
    assert f.apply(Retry("m[0]")) == ["task_retried", "task_dispatched"]
    assert f.events[0].tasks == ["r", "m[0]"]  # type: ignore[union-attr]
    assert f.flow.fanout["m"].left == 2
    f.apply(finished("m[1]"))
    f.run("m[0]")
    f.gathers_and_succeeds()


def test_a_succeeded_instance_retried_with_downstream_runs_again_with_what_follows() -> None:
    f = failed_instance()
    f.gathers_and_succeeds()
    assert retry_refusal(f.flow, "m[0]", False) is None
    f.apply(Retry("m[0]", downstream=True))
    assert f.events[0].tasks == ["m", "r", "m[0]"]  # type: ignore[union-attr]
    f.run("m[0]")
    f.gathers_and_succeeds()
    assert f.attempts("m[0]", "m[1]", "r") == [2, 1, 2]


def test_a_mapped_task_retried_runs_again_its_instances_that_did_not_succeed() -> None:
    f = Flow([MAPPED[0], {**MAPPED[1], "retry": ONCE}, MAPPED[2]], max_parallel=1)
    f.run("a")
    f.apply(Expand("m", items=("x", "y", "z")))
    f.run("m[0]")
    f.run("m[1]", ok=False)  # `m[2]`, not handed out yet, is skipped
    assert f.status("m", "m[0]", "m[1]", "m[2]", "r") == [
        "failed",
        "succeeded",
        "failed",
        "skipped",
        "skipped",
    ]
    assert f.apply(Retry("m")) == ["task_retried", "task_dispatched"]
    assert f.events[0].tasks == ["m", "r", "m[1]", "m[2]"]  # type: ignore[union-attr]
    f.run("m[1]", "m[2]")
    f.gathers_and_succeeds()
    assert f.attempts("m[0]", "m[1]", "m[2]") == [1, 2, 1]


def test_a_mapped_task_whose_gather_failed_gathers_again_when_retried() -> None:
    f = failed_instance()
    f.apply(Gather("m", error='task "m": output "rows.1" was not stored'))
    assert f.now() is FlowStatus.FAILED and f.status("m") == ["failed"]
    f.apply(Retry("m"))
    assert f.events[0].tasks == ["m", "r"]  # type: ignore[union-attr]
    assert f.gather() == ["task_succeeded", "task_dispatched"]
    f.run("r")
    assert f.now() is FlowStatus.SUCCEEDED
    assert f.replays()


def test_a_succeeded_mapped_task_is_retried_only_with_downstream_and_keeps_its_instances() -> None:
    f = failed_instance(count=2)
    f.gather()
    f.run("r")
    assert retry_refusal(f.flow, "m", False) == (
        'mapped task "m" succeeded, and so did each of its 2 instances: a retry has nothing '
        "to run again; retry one instance (`weir retry f1 'm[0]'`), add --downstream to run "
        "the tasks after it again, or run the flow again with `weir rerun f1`"
    )
    assert f.apply(Retry("m")) == []
    f.apply(Retry("m", downstream=True))
    assert f.events[0].tasks == ["m", "r"]  # type: ignore[union-attr]
    f.gathers_and_succeeds()
    assert f.attempts("m[0]", "m[1]", "r") == [1, 1, 2]


RUNNING = (
    'mapped task "m", which runs after a task the retry plans again, has not ended: 1 of '
    'its instances ("m[0]") have not ended, and it would read its list again; retry once it '
    "has ended, or cancel the flow and run it again with `weir rerun f1`"
)


def test_a_downstream_retry_reads_an_expanded_list_again_and_expands_anew() -> None:
    f = failed_instance(1)
    assert retry_refusal(f.flow, "a", True) is None
    assert f.apply(Retry("a", downstream=True)) == ["task_retried", "task_dispatched"]
    assert f.events[0].tasks == ["a", "m", "r"]  # type: ignore[union-attr]
    assert "m" not in f.flow.expanded and "m[0]" not in f.flow.tasks, "its instances are gone"
    assert f.status("a", "m", "r") == ["dispatched", "pending", "pending"]
    assert list(due(f.flow)) == [] and f.replays()
    f.run("a")
    assert list(due(f.flow)) == [("m", 0)], "it reads its list again"
    assert f.apply(Expand("m", items=("y0", "y1"))) == [
        "task_expanded",
        "task_dispatched",
        "task_dispatched",
    ]
    assert sorted(n for n in f.flow.tasks if n.startswith("m[")) == ["m[0]", "m[1]"]
    assert f.flow.plan is not None
    item = {e.name: e.value for e in f.flow.plan.tasks["m[1]"].env}["WEIR_ITEM"]
    assert item == '"y1"', "the instance runs the item read anew"
    f.run("m[0]", "m[1]")
    f.gathers_and_succeeds()
    assert len([e for e in f.log if event_type(e) == "task_expanded"]) == 2
    # New instances count their attempts on from the dropped ones of their names.
    assert f.attempts("a", "m[0]", "m[1]", "r") == [2, 2, 2, 1]
    assert [f.flow.tasks[n].failures for n in ("m[0]", "m[1]")] == [(), ()], "a new budget"


def test_a_re_expanded_instance_never_repeats_an_attempt_number_and_old_reports_are_stale() -> None:
    """Found by the mapped decider machine: `m[1]` expanded anew started at attempt 1
    again, so the old attempt 1's failure, reported again, failed the new instance (and a
    runner, naming the attempt's pod or process by its number, would take the new attempt
    for the old one, already there)."""
    f = failed_instance(1)  # m[0], m[2] succeeded and m[1] failed, each at attempt 1
    old_failure, old_success = finished("m[1]", False, 1), finished("m[0]", True, 1)
    f.apply(Retry("a", downstream=True))
    # The dropped instances' late reports and timers are about tasks the flow has no more.
    for stale in (old_failure, old_success, started("m[2]", 1), FireTimer("retry", "m[1]", 1)):
        assert f.apply(stale) == [], stale
    f.run("a")
    f.apply(Expand("m", items=("y0", "y1")))
    dispatched = [(e.task, e.attempt) for e in f.events[1:]]  # type: ignore[union-attr]
    assert dispatched == [("m[0]", 2), ("m[1]", 2)]
    for stale in (old_failure, old_success, started("m[1]", 1)):
        assert f.apply(stale) == [], stale
    assert f.status("m[0]", "m[1]") == ["dispatched", "dispatched"]
    f.run("m[0]", "m[1]")
    f.gathers_and_succeeds()
    # Into more items than before, twice dropped: `m[2]` counts on from its attempt 1 (the
    # expansion into two items had none), `m[3]` is new.
    f.apply(Retry("a", downstream=True))
    f.run("a")
    f.apply(Expand("m", items=("z0", "z1", "z2", "z3")))
    assert f.attempts("m[0]", "m[1]", "m[2]", "m[3]") == [3, 3, 2, 1]
    assert f.apply(finished("m[2]", True, 1)) == []
    f.run("m[0]", "m[1]", "m[2]", "m[3]")
    f.gathers_and_succeeds()


def test_a_re_expansion_into_more_or_no_items_and_its_history_stay_in_the_log() -> None:
    f = failed_instance(count=2)
    f.gathers_and_succeeds()
    f.apply(Retry("a", downstream=True))
    f.run("a")
    f.apply(Expand("m", items=("p", "q", "r", "s")))
    assert f.flow.unfinished == 6 and f.flow.fanout["m"].count == 4
    positions = f.flow.plan.positions if f.flow.plan else {}
    assert sorted(positions.values()) == list(range(len(positions))), "numbered again"
    f.run(*(f"m[{i}]" for i in range(4)))
    f.gathers_and_succeeds()
    # Into nothing: the mapped task succeeds at once, its followers run.
    f.apply(Retry("a", downstream=True))
    f.run("a")
    f.apply(Expand("m", items=()))
    assert "m[0]" not in f.flow.tasks and f.status("m") == ["pending"]
    f.gathers_and_succeeds()
    assert len(f.flow.tasks) == 3
    counts = [e.count for e in f.log if event_type(e) == "task_expanded"]  # type: ignore[union-attr]
    assert counts == [2, 4, 0]
    # A mapped task run again alone (no task before it runs again) keeps its items.
    f.apply(Retry("m", downstream=True))
    assert list(due(f.flow)) == [("m", 1)] and f.replays()


def test_a_retry_that_would_read_a_list_again_while_instances_run_is_refused() -> None:
    g = Flow(MAPPED)
    g.run("a")
    g.apply(Expand("m", items=("x",)))
    assert retry_refusal(g.flow, "a", False) == RUNNING
    assert retry_refusal(g.flow, "a", True) == RUNNING
    assert g.apply(Retry("a", downstream=True)) == []
    # An instance is no task to wait for: while one runs, a sibling is retried.
    assert retry_refusal(g.flow, "m[0]", False) == (
        'task "m[0]" is dispatched: only a task that failed or succeeded can be retried; '
        "wait for it to end"
    )
    # Without --downstream `m`, which has ended, keeps its instances: `a` alone runs again.
    f = failed_instance(1)
    assert f.apply(Retry("a")) == ["task_retried", "task_skipped", "task_dispatched"]
    assert f.events[0].tasks == ["a", "r"]  # type: ignore[union-attr]
    assert f.status("m", "r") == ["failed", "skipped"]
    assert "m" in f.flow.expanded and f.replays()
    h = Flow(MAPPED)
    h.run("a")
    h.apply(Expand("m", items=()))
    h.gather()
    assert retry_refusal(h.flow, "m", False) == (
        'mapped task "m" succeeded with no instances (its list was empty): a retry has '
        "nothing to run again; add --downstream to run the tasks after it again, or run the "
        "flow again with `weir rerun f1`"
    )


def test_a_skipped_instance_is_planned_again_by_the_retry_of_what_skipped_it() -> None:
    f = Flow([MAPPED[0], {**MAPPED[1], "retry": ONCE}, MAPPED[2]], max_parallel=1)
    f.run("a")
    f.apply(Expand("m", items=("x", "y")))
    f.run("m[0]", ok=False)
    assert f.status("m[1]") == ["skipped"]
    assert retry_refusal(f.flow, "m[1]", False) == (
        'task "m[1]" was skipped: only a task that failed or succeeded can be retried; retry '
        "the task it waited for, which plans it again"
    )
    f.apply(Retry("m[0]"))
    assert f.events[0].tasks == ["m", "r", "m[0]", "m[1]"]  # type: ignore[union-attr]
    f.run("m[0]", "m[1]")
    f.gathers_and_succeeds()


def test_a_mapped_task_is_not_planned_again_while_a_task_before_it_runs_again() -> None:
    """Found by the mapped decider machine: `a` retried alone (its mapped task `m` had
    failed), then `m` retried while `a` ran: once `a` succeeded, `m` was expanded a second
    time. Now `m` and its instances wait until `a` has ended, and then keep their items."""
    f = failed_instance(1)
    assert f.apply(Retry("a")) == ["task_retried", "task_skipped", "task_dispatched"]
    waits = (
        'mapped task "m", which the retry plans again, runs after task "a", which is '
        'dispatched: its instances would run before "a" ended; retry once it has ended'
    )
    assert retry_refusal(f.flow, "m", False) == waits
    assert retry_refusal(f.flow, "m", True) == waits
    assert retry_refusal(f.flow, "m[1]", False) == waits  # it plans `m` again too
    assert f.apply(Retry("m")) == [] and f.apply(Retry("m[1]")) == []
    f.run("a")
    assert f.status("m") == ["failed"] and list(due(f.flow)) == []
    assert f.apply(Retry("m[1]"))[:1] == ["task_retried"]
    f.run("m[1]")
    f.gathers_and_succeeds()
    assert [event_type(e) for e in f.log].count("task_expanded") == 1


def test_an_empty_map_is_not_expanded_again_after_the_task_before_it_ran_again() -> None:
    """The same with a list of no items, whose gather had failed."""
    f = Flow([MAPPED[0], {**MAPPED[1], "retry": ONCE}, MAPPED[2]])
    f.run("a")
    f.apply(Expand("m", items=()))
    f.apply(Gather("m", error="the store lost a part"))
    assert f.now() is FlowStatus.FAILED
    f.apply(Retry("a"))
    assert f.apply(Retry("m", downstream=True)) == []
    f.run("a")
    assert list(due(f.flow)) == [], "nothing reads the list again"
    assert f.apply(Retry("m", downstream=True))[:1] == ["task_retried"]
    f.gathers_and_succeeds()
    assert [event_type(e) for e in f.log].count("task_expanded") == 1


def test_a_mapped_task_whose_instances_outlive_a_fail_fast_cancel_ends_and_so_does_the_flow() -> (
    None
):
    """Found by the mapped decider machine: under fail_fast, a sibling of mapped task `m`
    (which runs after a failure) failed while `m`'s instances ran; the cancel let them end
    and `m` end as they did, but once they all succeeded `m` waited for its outputs to be
    gathered, which a cancelling flow never does: the flow never ended. It ends cancelled
    (nothing after it runs), then the on_exit task runs."""
    after_all = {"trigger": "all_done", "outputs": [{"name": "rows", "path": "r"}]}
    tasks = [
        MAPPED[0],
        task("m", depends=["a"], map={"over": "files"}, **after_all),
        task("n", depends=["a"], map={"over": "files"}),
    ]

    def sibling_fails(*starting: str) -> Flow:
        f = Flow(tasks, fail_fast=True, on_exit=task("exit"))
        f.run("a")
        f.apply(Expand("m", items=("x", "y")))
        for name in starting:
            f.apply(started(name))
        assert f.apply(Expand("n", error="not a list"))[:2] == [
            "task_failed",
            "flow_cancel_requested",
        ]
        return f

    f = sibling_fails("m[0]", "m[1]")
    f.run("m[0]")
    assert f.apply(finished("m[1]")) == ["task_succeeded", "task_cancelled", "task_dispatched"]
    assert list(due(f.flow)) == [], "no gather"
    f.run("exit")
    assert f.now() is FlowStatus.FAILED and f.status("m") == ["cancelled"]
    assert f.replays()
    # An instance the cancel ended before it started: `m` ends cancelled, with no gather.
    g = sibling_fails("m[0]")
    assert g.status("m[0]", "m[1]") == ["running", "cancelled"]
    g.apply(finished("m[0]"))
    assert g.status("m") == ["cancelled"] and list(due(g.flow)) == []


def test_an_instance_failing_under_fail_fast_lets_a_sibling_maps_instances_end_and_it_end() -> None:
    """The same, found by the machine after a downstream retry had planned both mapped tasks
    from scratch: instance `n[0]` failed while `m[0]` ran; `m` (all_success) waited for a
    gather the cancel refused, pending while nothing ran."""
    once = {"retry": ONCE, "outputs": [{"name": "rows", "path": "r"}]}
    f = Flow(
        [
            MAPPED[0],
            task("m", depends=["a"], map={"over": "files"}, **once),
            task("n", depends=["a"], map={"over": "files"}, retry=ONCE),
        ],
        fail_fast=True,
        on_exit=task("exit"),
    )
    f.run("a")
    for name in ("m", "n"):
        f.apply(Expand(name, items=("x",)))
        f.run(f"{name}[0]")
    f.gather()
    f.run("exit")
    assert f.now() is FlowStatus.SUCCEEDED
    f.apply(Retry("a", downstream=True))
    f.run("a")
    f.apply(Expand("m", items=("x",)))
    f.apply(Expand("n", items=("x",)))
    f.apply(started("m[0]", 2))
    f.run("n[0]", ok=False)
    assert f.flow.cancelling and f.status("n[0]", "m[0]") == ["failed", "running"]
    assert f.apply(finished("m[0]", True, 2)) == [
        "task_succeeded",
        "task_cancelled",
        "task_dispatched",
    ]
    f.run("exit")
    assert f.now() is FlowStatus.FAILED and f.status("m", "n[0]") == ["cancelled", "failed"]
    assert f.replays()


async def test_the_rows_of_dropped_instances_go_and_those_listed_after_them_move_up() -> None:
    """What the shell writes for a downstream retry that drops instances: their task rows
    are deleted and their timers cleared (the log keeps their history), the rows of the
    instances listed after them take their new positions, and a later expansion writes
    the new instances' rows."""
    f = Flow(
        [
            MAPPED[0],
            task("b", depends=["a"], outputs=[{"name": "more", "path": "m"}]),
            task("m", depends=["b"], map={"over": "more"}),
            task("n", depends=["a"], map={"over": "files"}),
        ]
    )
    f.run("a", "b")
    f.apply(Expand("m", items=("x", "y")))
    f.apply(Expand("n", items=("z",)))
    f.run("m[0]", "m[1]", "n[0]")
    assert f.now() is FlowStatus.SUCCEEDED
    assert f.flow.plan is not None and f.flow.plan.positions["n[0]"] == 6
    data = MemoryData(lambda: NOW)
    await data.append(append_batch([sealed(Change(FoldedFlow(id="f1"), f.flow, f.log))], Timing()))
    before = f.flow
    f.apply(Retry("b", downstream=True))
    assert f.events[0].tasks == ["b", "m"]  # type: ignore[union-attr]
    batch = append_batch([sealed(Change(before, f.flow, f.events))], Timing())
    gone = [("f1", "m[0]"), ("f1", "m[1]")]
    assert [(k.flow_id, k.task) for k in batch.tasks_dropped] == gone
    assert set(gone) <= {(k.flow_id, k.task) for k in batch.timers_cleared}
    rows = {row.name: row.position for row in batch.tasks}
    assert rows == {"b": 1, "m": 2, "n[0]": 4}, "n[0] moved up to where m[0] was"
    await data.append(batch)
    view = await data.flow_view("f1")
    assert view is not None
    assert [t.name for t in view.tasks] == ["a", "b", "m", "n", "n[0]"]
    f.run("b")
    before = f.flow
    f.apply(Expand("m", items=("w",)))
    batch = append_batch([sealed(Change(before, f.flow, f.events))], Timing())
    assert {row.name: row.position for row in batch.tasks} == {"m": 2, "m[0]": 5}
    assert not batch.tasks_dropped


def test_only_downstream_plans_an_expanded_mapped_task_from_scratch() -> None:
    """Without --downstream a retry keeps every expansion: one that would make an expanded
    mapped task wait for a task before it (`m`, skipped, is planned again after `a`) is
    refused and says how; with --downstream `m` reads its list again."""
    f = Flow(
        [
            MAPPED[0],
            task("m", depends=["a"], map={"over": "files"}),
            task("x", depends=["a"], retry=ONCE),
        ],
        max_parallel=1,
    )
    f.run("a")
    f.apply(Expand("m", items=("p", "q")))  # `x` holds the one slot
    f.run("x", ok=False)
    assert f.now() is FlowStatus.FAILED
    assert f.status("m", "m[0]", "m[1]") == ["skipped", "skipped", "skipped"]
    assert retry_refusal(f.flow, "a", False) == (
        'mapped task "m", which runs after a task the retry plans again, was expanded into '
        "instances: it would have to read its list again; add --downstream to plan it from "
        "scratch (it reads its list again), or run the flow again with "
        "`weir rerun f1 --failed-only`"
    )
    assert f.apply(Retry("a")) == []
    assert f.apply(Retry("a", downstream=True))[:1] == ["task_retried"]
    assert f.events[0].tasks == ["a", "m", "x"]  # type: ignore[union-attr]
    f.run("a")
    assert list(due(f.flow)) == [("m", 0)]


def test_a_retry_of_an_instance_never_drops_its_own_mapped_tasks_instances() -> None:
    """A task before mapped task `m` that is planned again (skipped by its condition, every
    skipped task is planned again once no failure is left) would make `m` wait for it: the
    retry of instance `m[1]` is refused, also with --downstream (which plans from scratch
    only the mapped tasks after `m`), instead of dropping `m[1]` itself."""
    f = Flow(
        [
            MAPPED[0],
            task("b", depends=["a"], when="params.go"),
            task("m", depends=["a", "b"], trigger="none_failed", map={"over": "files"}, retry=ONCE),
        ],
        params={"go": {"type": "bool", "default": False}},
    )
    f.run("a")
    f.apply(Expand("m", items=("x", "y")))
    f.run("m[0]")
    f.run("m[1]", ok=False)
    assert f.now() is FlowStatus.FAILED and f.status("b", "m") == ["skipped", "failed"]
    refusal = (
        'mapped task "m", which runs after a task the retry plans again, was expanded into '
        "instances: it would have to read its list again; retry a task before it with "
        "--downstream, which plans it from scratch, or run the flow again with "
        "`weir rerun f1 --failed-only`"
    )
    assert retry_refusal(f.flow, "m[1]", False) == refusal
    assert retry_refusal(f.flow, "m[1]", True) == refusal
    assert f.apply(Retry("a", downstream=True))[:1] == ["task_retried"]
    assert f.events[0].tasks == ["a", "b", "m"]  # type: ignore[union-attr]


def test_a_retried_mapped_task_whose_list_was_unusable_runs_its_instances_in_a_failing_flow() -> (
    None
):
    """Found by the mapped decider machine: `m` failed on its list, `n` too (the flow
    failed); `m` retried read its list again while `n` stayed failed, and its instances,
    expanded in a failing flow, never started (only a task that runs despite a failure is
    expanded then: the retried one's instances run, as the retried instances of one do)."""
    f = Flow(
        [
            MAPPED[0],
            task("m", depends=["a"], map={"over": "files"}),
            task("n", depends=["a"], map={"over": "files"}, trigger="all_done"),
        ]
    )
    f.run("a")
    f.apply(Expand("m", error="not a list"))
    f.apply(Expand("n", error="not a list"))
    assert f.now() is FlowStatus.FAILED
    assert f.apply(Retry("m")) == ["task_retried"]
    assert list(due(f.flow)) == [("m", 0)]
    assert f.apply(Expand("m", items=("x", "y"))) == [
        "task_expanded",
        "task_dispatched",
        "task_dispatched",
    ]
    f.run("m[0]", "m[1]")
    assert f.status("m", "n") == ["succeeded", "failed"]
    assert f.now() is FlowStatus.FAILED, "n stays failed"
    assert f.replays()


def test_an_attempt_failing_under_a_fail_fast_cancel_is_not_retried() -> None:
    """Found by the mapped decider machine: under fail_fast (no on_exit task), instance
    `m[0]` of an all_done mapped task, with attempts left, ran while `n[0]` failed; when it
    then failed too it was set to retry, a retry the cancel never hands out: the flow never
    ended. A failure under a cancel that stops the task is final (a plain task's too)."""
    retries = {"max_attempts": 2}
    f = Flow(
        [
            MAPPED[0],
            task("m", depends=["a"], map={"over": "files"}, trigger="all_done", retry=retries),
            task("n", depends=["a"], map={"over": "files"}, retry=ONCE),
            task("x", depends=["a"], trigger="all_done", retry=retries),
        ],
        fail_fast=True,
    )
    f.run("a")
    f.apply(Expand("m", items=("p",)))
    f.apply(Expand("n", items=("q",)))
    f.apply(started("m[0]"))
    f.apply(started("x"))
    f.run("n[0]", ok=False)
    assert f.flow.cancelling and f.status("m[0]", "x") == ["running", "running"]
    assert f.apply(finished("m[0]", False)) == ["task_failed"]
    assert f.apply(finished("x", False)) == ["task_failed", "flow_failed"]
    assert f.status("m", "m[0]", "n", "x") == ["cancelled", "failed", "cancelled", "failed"]
    assert f.replays()


def test_a_mapped_task_whose_waiting_instance_a_failure_skipped_is_skipped_not_gathered() -> None:
    """Found by the mapped decider machine: retried instances `m*[1]` waited for the one
    slot `n[0]` held; `n` then failed as a whole (as `n[1]` had), which skipped them, but
    their mapped tasks, looked at before `n` ended, were left waiting for a gather and then
    succeeded with a skipped instance. Ending mapped tasks goes on until none is left."""
    names = [f"m{i}" for i in range(5)]  # (one looked at before `n`, whatever the order)
    f = Flow(
        [
            MAPPED[0],
            *(
                task(
                    m,
                    depends=["a"],
                    map={"over": "files"},
                    outputs=[{"name": f"{m}-out", "path": "o"}],
                )
                for m in names
            ),
            task("n", depends=["a"], map={"over": "files"}, retry=ONCE),
        ],
        max_parallel=1,
    )
    f.run("a")
    for name in [*names, "n"]:
        f.apply(Expand(name, items=("x", "y")))
    for name in names:
        f.run(f"{name}[0]", f"{name}[1]")
        f.apply(Gather(name, (OutputDigest(name=f"{name}-out", size=2, sha256="00"),)))
    f.run("n[0]")
    f.run("n[1]", ok=False)
    assert f.now() is FlowStatus.FAILED
    f.apply(Retry("n[0]"))  # it holds the one slot
    for name in names:
        f.apply(Retry(f"{name}[1]"))
    assert f.status("n[0]", *(f"{m}[1]" for m in names)) == ["dispatched"] + ["pending"] * 5
    f.run("n[0]")
    assert f.status("n", *names) == ["failed"] + ["skipped"] * 5
    assert list(due(f.flow)) == [] and f.now() is FlowStatus.FAILED
    assert f.replays()
