"""The decider as a state machine: random flows, then random commands and reports in any
order — releases, starts, finishes (ok, failed, snoozed, cancelled, deterministic), timers
firing late, duplicate and stale reports, cancels (also racing a success), reruns, mapped
tasks expanded into instances (or failing on their list) and their outputs gathered,
conditions reading upstream outputs (or failing to), pauses, resumes, retries of one task
(also of unknown or running ones) and updates — with the invariants checked after every step,
among them that the log folds to the live state and that from every state the flow still
reaches an end."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from weir_proto.events import (
    FlowCancelRequested,
    FlowEvent,
    FlowSubmitted,
    TaskRetried,
    event_type,
)
from weir_proto.messages import AttemptFinished, AttemptStarted, ErrorType, OutputDigest
from weir_proto.spec import FlowSpec, MapSpec, RetryPolicy, TaskSpec
from weir_proto.status import FlowStatus, TaskStatus
from weir_scheduler.decider import (
    Cancel,
    Command,
    Expand,
    FireTimer,
    FoldedFlow,
    Gather,
    Pause,
    Policy,
    ReadCondition,
    RecordFinished,
    RecordStarted,
    Release,
    Resume,
    Retry,
    Submit,
    Update,
    decide,
    evolve,
    fold,
)
from weir_scheduler.decider.fanout import CONDITION_PHASE, EXPAND_PHASE, due
from weir_scheduler.decider.gates import to_read
from weir_scheduler.decider.stepping import retry_refusal, update_refusal
from weir_scheduler.map_plan import instances, parent_of
from weir_scheduler.planner import Plan, plan

from tests.flows import task

pytestmark = pytest.mark.timeout(600)  # a long property run, shrinking included

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GPU_LIMIT = 1
WINDOW = 1
"""Dispatches per flow on `default` that no runner has started: small, so it binds often."""
POLICY = Policy(limited_queues=frozenset({"gpu"}), dispatch_window=WINDOW)
OUTCOMES = ["ok", "ok", "fail", "snooze", "killed", "secret"]
STARTS_WORK = ("task_dispatched", "task_started", "task_queued")
TRIGGERS = ["all_success", "all_done", "all_failed", "one_failed", "one_success", "none_failed"]


@st.composite
def flow_specs(draw: st.DrawFn) -> FlowSpec:
    count = draw(st.integers(1, 6))
    names = [f"t{i}" for i in range(count)]
    tasks = []
    for i, name in enumerate(names):
        depends = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2)) if i else []
        queue = draw(st.sampled_from(["default", "default", "gpu"]))
        retry = {"max_attempts": draw(st.integers(1, 3))}
        extra: dict[str, Any] = {}
        if draw(st.integers(0, 2)) == 0:
            extra["trigger"] = draw(st.sampled_from(TRIGGERS))
        if depends and draw(st.integers(0, 3)) == 0:
            upstream = draw(st.sampled_from(depends))
            extra["when"] = draw(
                st.sampled_from(
                    [
                        f'tasks.{upstream}.status == "succeeded"',
                        f"tasks.{upstream}.exit_code != 0 or params.go",
                        "not params.go",
                        f'tasks.{upstream}.outputs.o{names.index(upstream)} == "go"',
                    ]
                )
            )
        extra["outputs"] = [{"name": f"o{i}", "path": "out"}]
        if depends and draw(st.integers(0, 3)) == 0:
            extra["map"] = {"over": f"o{names.index(draw(st.sampled_from(depends)))}"}
        tasks.append(task(name, depends=depends, queue=queue, retry=retry, **extra))
    doc: dict[str, Any] = {"name": "f", "tasks": draw(st.permutations(tasks))}
    doc["params"] = {"go": {"type": "bool", "default": draw(st.booleans())}}
    if draw(st.integers(0, 2)) == 0:
        doc["on_exit"] = task("exit")
    if draw(st.booleans()):
        doc["fail_fast"] = True
    if draw(st.booleans()):
        doc["max_parallel"] = draw(st.integers(1, 3))
    if draw(st.integers(0, 4)) == 0:
        doc["delay"] = 60
    return msgspec.convert(doc, FlowSpec)


def _instances_running(flow: FoldedFlow, name: str) -> bool:
    assert flow.plan is not None
    names = instances(flow.plan, name)
    return any(flow.tasks[i].status is TaskStatus.RUNNING for i in names)


def _existed(name: str, ended: dict[str, str]) -> bool:
    """Whether task `name` existed when the log got as far as `ended` says (an instance
    exists once its task was expanded into more items than its index)."""
    parent = parent_of(name)
    return parent is None or int(ended.get(f"{parent[0]} expanded", "0")) > parent[1]


def _replanned(plan: Plan, retried: TaskRetried) -> set[str]:
    """The mapped tasks `retried` plans from scratch: with downstream, those after the
    retried task (after its mapped task, for an instance); they read their list again and
    expand anew."""
    if not retried.downstream:
        return set()
    parent = parent_of(retried.task)
    head = parent[0] if parent is not None else retried.task
    return {n for n in plan.descendants(head) if plan.tasks[n].map is not None}


class DeciderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.flows: dict[str, FoldedFlow] = {}
        self.logs: dict[str, list[FlowEvent]] = {}
        self.handled: list[Command] = []
        self.current = ""
        self.ended: dict[str, int] = {}
        """Terminal flows and their seq when they ended."""
        self.run_to_end: dict[str, FoldedFlow] = {}
        """Each flow's state last run to its end (immutable: the same object, the same run)."""
        self.folded: dict[str, FoldedFlow] = {}
        """Each flow's state last checked against its folded log (every event makes a new
        state, so the same object has the same log)."""

    # -- driving ------------------------------------------------------------------------

    def run(self, command: Command, flow_id: str | None = None) -> list[FlowEvent]:
        flow_id = flow_id or self.current
        flow = self.flows[flow_id]
        events = decide(flow, command, NOW, POLICY)
        if flow.paused and not isinstance(command, Resume):
            handed = ("task_dispatched", "task_queued")
            # (a cancel ends the pause, and its first lets the on_exit task run last)
            spared = flow.plan.on_exit if isinstance(command, Cancel) and flow.plan else None
            started = [
                event_type(e)
                for e in events
                if event_type(e) in handed and getattr(e, "task", None) != spared
            ]
            assert not started, f"{command!r} handed out work in a paused flow"
        for event in events:
            flow = evolve(flow, event)
        self.flows[flow_id] = flow
        self.logs[flow_id].extend(events)
        # Release has no attempt: a later one may be fresh. A command that decided nothing
        # (a report on an attempt not dispatched yet, a retry timer for an attempt that had
        # not failed yet) is no duplicate later: it may count once the attempt exists.
        # (each cancel is a user's: a second ends the on_exit task the first spared; the
        # `cancel` rule checks that one that ends nothing more decides nothing)
        stepping = Release | Pause | Resume | Retry | Update | Cancel  # may count again later
        if flow_id == self.current and events and not isinstance(command, stepping):
            self.handled.append(command)
        if flow.status.terminal:
            self.ended.setdefault(flow_id, flow.seq)
        return events

    def submit(self, spec: FlowSpec, rerun_of: str | None, reused: tuple[str, ...]) -> None:
        self.current = f"f{len(self.flows) + 1}"
        self.flows[self.current] = FoldedFlow(id=self.current)
        self.logs[self.current] = []
        self.handled = []
        self.run(Submit(spec, plan(spec), rerun_of, reused))

    @property
    def flow(self) -> FoldedFlow:
        return self.flows[self.current]

    def report(self, name: str, attempt: int, outcome: str) -> RecordFinished:
        fields: dict[str, Any] = {}
        match outcome:
            case "fail":
                fields = {"exit_code": 1, "error_type": ErrorType.EXIT_CODE}
            case "snooze":
                fields = {"exit_code": 75, "snooze_seconds": 5.0}
            case "killed":
                fields = {"error_type": ErrorType.CANCELLED}
            case "secret":
                fields = {"error_type": ErrorType.SECRET}
        finished = AttemptFinished(
            flow_id=self.current,
            task=name,
            attempt=attempt,
            runner="r",
            token="t",
            at=NOW,
            **fields,
        )
        return RecordFinished(finished)

    def attempt_of(self, name: str, skew: int) -> int:
        return max(self.flow.tasks[name].attempt + skew, 0)

    # -- rules --------------------------------------------------------------------------

    @initialize(spec=flow_specs())
    def submitted(self, spec: FlowSpec) -> None:
        self.submit(spec, None, ())

    @rule(data=st.data())
    def queue_has_room(self, data: st.DataObject) -> None:
        queued = [t.name for t in self.flow.tasks.values() if t.status is TaskStatus.QUEUED]
        if queued and self.gpu_in_flight() < GPU_LIMIT:
            self.run(Release(data.draw(st.sampled_from(queued))))

    @rule(data=st.data(), skew=st.sampled_from([0, 0, 0, -1, 1]))
    def started(self, data: st.DataObject, skew: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.flow.tasks)))
        report = AttemptStarted(
            flow_id=self.current,
            task=name,
            attempt=self.attempt_of(name, skew),
            runner="r",
            token="t",
            at=NOW,
        )
        self.run(RecordStarted(report))

    @rule(
        data=st.data(),
        skew=st.sampled_from([0, 0, 0, -1, 1]),
        outcome=st.sampled_from(OUTCOMES),
    )
    def finished(self, data: st.DataObject, skew: int, outcome: str) -> None:
        name = data.draw(st.sampled_from(sorted(self.flow.tasks)))
        self.run(self.report(name, self.attempt_of(name, skew), outcome))

    @rule(
        data=st.data(),
        kind=st.sampled_from(["start", "retry", "deadline", "lease"]),
        skew=st.sampled_from([0, 0, -1]),
    )
    def timer_fires(self, data: st.DataObject, kind: Any, skew: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.flow.tasks)))
        attempt = self.attempt_of(name, skew)
        if kind == "start":  # its `attempt` counts the updates that set its start
            attempt = max(self.flow.updates + skew, 0)
        self.run(FireTimer(kind, name, attempt))

    @rule(data=st.data(), outcome=st.sampled_from(["ok", "ok", "fail"]))
    def a_handed_out_attempt_ends(self, data: st.DataObject, outcome: str) -> None:
        """An attempt a runner holds ends (so flows get far enough to expand and gather)."""
        active = sorted(t.name for t in self.flow.tasks.values() if t.status.active)
        if active:
            name = data.draw(st.sampled_from(active))
            self.run(self.report(name, self.flow.tasks[name].attempt, outcome))

    @rule(data=st.data(), count=st.integers(0, 3), fails=st.integers(0, 4))
    def list_read(self, data: st.DataObject, count: int, fails: int) -> None:
        """The shell read the list of a mapped task waiting for it (or found it unusable),
        gathered its instances' outputs, or read the outputs a condition names."""
        waiting = sorted(due(self.flow))
        if not waiting:
            return
        name, phase = data.draw(st.sampled_from(waiting))
        if phase == CONDITION_PHASE:
            value = ["go", "stop", 3, None][count]
            read = tuple((output, value) for _, output in to_read(self.flow, name))
            assert read, f"{name} waits for outputs but reads none"
            self.run(ReadCondition(name, read, error="not stored" if fails == 0 else None))
        elif phase == EXPAND_PHASE:
            items = tuple(f"item-{i}" for i in range(count))
            error = "not a list" if fails == 0 else None
            self.run(Expand(name, items=() if error else items, error=error))
        else:
            digest = OutputDigest(name=name, size=2, sha256="00")
            self.run(
                Gather(name, error="store lost a part") if fails == 0 else Gather(name, (digest,))
            )

    @rule(reason=st.sampled_from(["stop", "again"]))
    def cancel(self, reason: str) -> None:
        was = self.flow
        events = self.run(Cancel(reason))
        if was.halted or was.status.terminal:
            assert events == [], "a second cancel changes nothing"
        else:
            assert [event_type(e) for e in events][:1] == ["flow_cancel_requested"]

    @rule(data=st.data())
    def cancel_races_a_success(self, data: st.DataObject) -> None:
        """A task's success and a cancel arrive together, in either order."""
        running = [t for t in self.flow.tasks.values() if t.status.active]
        if not running:
            return
        chosen = data.draw(st.sampled_from(running))
        success = self.report(chosen.name, chosen.attempt, "ok")
        both: list[Command] = [success, Cancel("race")]
        first, second = data.draw(st.permutations(both))
        self.run(first)
        self.run(second)

    @rule(reason=st.sampled_from(["hold", "again"]))
    def pause(self, reason: str) -> None:
        was = self.flow
        events = self.run(Pause(reason))
        if was.status.terminal or was.paused or was.status is FlowStatus.CANCELLING:
            assert events == [], "a pause of an ended, cancelling or paused flow changes nothing"
        else:
            assert [event_type(e) for e in events] == ["flow_paused"]

    @rule()
    def resume(self) -> None:
        was = self.flow
        events = self.run(Resume())
        assert bool(events) == was.paused
        if events:
            assert event_type(events[0]) == "flow_resumed"

    @rule(data=st.data(), downstream=st.booleans())
    def retry(self, data: st.DataObject, downstream: bool) -> None:
        was = self.flow
        ended = [n for n, t in sorted(was.tasks.items()) if t.status.terminal]
        name = data.draw(st.sampled_from(ended or [*sorted(was.tasks), "nope"]))
        if data.draw(st.integers(0, 5)) == 0:  # also any task, or one that does not exist
            name = data.draw(st.sampled_from([*sorted(was.tasks), "nope"]))
        self.retried(name, downstream)

    def retried(self, name: str, downstream: bool) -> None:
        was = self.flow
        refusal = retry_refusal(was, name, downstream) if was.plan else "no plan"
        events = self.run(Retry(name, downstream))
        assert (refusal is None) == bool(events), (refusal, events)
        if events:
            assert event_type(events[0]) == "task_retried"
            # A task planned again (or waiting again for one) waits for the shell anew: what
            # it read before is no duplicate of what it reads next.
            waits = {n for n, t in self.flow.tasks.items() if not t.status.terminal}
            shell = Expand | Gather | ReadCondition
            self.handled = [
                c
                for c in self.handled
                if not (isinstance(c, shell) and c.task in waits)
                and not isinstance(c, Cancel)  # a cancel of the running flow again is news
            ]
            self.ended.pop(self.current, None)
            if self.flow.status.terminal:  # everything planned again was skipped at once
                self.ended[self.current] = self.flow.seq

    @rule(priority=st.integers(0, 5), go=st.booleans(), later=st.booleans())
    def update(self, priority: int, go: bool, later: bool) -> None:
        was = self.flow
        if was.plan is None:
            return
        spec = msgspec.structs.replace(
            was.plan.spec, priority=priority, arguments={"go": go}, tags=["updated"]
        )
        start_at = NOW.replace(year=2027) if later else None
        command = Update(spec, plan(spec), ("priority", "params", "tags"), start_at)
        refusal = update_refusal(was)
        events = self.run(command)
        assert (refusal is None) == bool(events), (refusal, events)
        if events:
            assert event_type(events[0]) == "flow_updated"
            assert self.flow.plan is not None and self.flow.plan.params["go"] is go

    @precondition(lambda self: bool(self.handled))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        command = data.draw(st.sampled_from(self.handled))
        assert self.run(command) == [], f"duplicate {command!r} decided something"

    @precondition(lambda self: len(self.flows) > 1)
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def late_report_to_an_ended_flow(self, data: st.DataObject, outcome: str) -> None:
        flow_id = data.draw(st.sampled_from(sorted(self.ended)))
        old = self.flows[flow_id]
        name = data.draw(st.sampled_from(sorted(old.tasks)))
        for command in (Cancel("late"), self.report(name, old.tasks[name].attempt, outcome)):
            events = decide(old, command, NOW, POLICY)
            assert events == [], "an ended flow changes only through a rerun"

    @precondition(lambda self: self.flow.status.terminal and self.flow.plan is not None)
    @rule(failed_only=st.booleans())
    def rerun(self, failed_only: bool) -> None:
        source = self.flow
        assert source.plan is not None
        reused: tuple[str, ...] = ()
        if failed_only:
            succeeded = TaskStatus.SUCCEEDED
            reused = tuple(n for n, t in source.tasks.items() if t.status is succeeded)
        self.submit(source.plan.spec, source.id, reused)

    # -- invariants ---------------------------------------------------------------------

    def gpu_in_flight(self) -> int:
        return sum(
            t.status.active and t.queue == "gpu"
            for flow in self.flows.values()
            for t in flow.tasks.values()
        )

    @invariant()
    def log_folds_to_the_live_state(self) -> None:
        for flow_id, flow in self.flows.items():
            if self.folded.get(flow_id) is not flow:  # a step that changed it
                assert fold(flow_id, self.logs[flow_id]) == flow
                self.folded[flow_id] = flow

    @invariant()
    def tasks_start_only_once_their_dependencies_ended_as_their_trigger_asks(self) -> None:
        for flow_id, log in self.logs.items():
            flow = self.flows[flow_id]
            if flow.plan is None:
                continue
            plan = flow.plan
            submitted = log[0]
            assert isinstance(submitted, FlowSubmitted)
            ended: dict[str, str] = {n: "succeeded" for n in submitted.reused}
            for event in log:
                kind = event_type(event)
                name = getattr(event, "task", "")
                if isinstance(event, TaskRetried):
                    for again in event.tasks:
                        ended.pop(again, None)
                    for mapped in _replanned(plan, event):
                        ended = {
                            n: s
                            for n, s in ended.items()
                            if n != f"{mapped} expanded" and n.partition("[")[0] != mapped
                        }
                if kind == "flow_updated":  # planned again from scratch
                    ended = {n: "succeeded" for n in submitted.reused}
                if kind in ("task_succeeded", "task_failed", "task_skipped", "task_cancelled"):
                    ended[name] = kind.removeprefix("task_")
                if kind == "task_expanded":
                    ended[f"{name} expanded"] = str(event.count)  # type: ignore[union-attr]
                if kind not in ("task_dispatched", "task_queued") or name in ended:
                    continue
                instance = parent_of(name)
                if instance is not None:  # (also one a later expansion dropped)
                    assert _existed(name, ended), f"{name} ran before its list"
                    continue
                assert plan.tasks[name].map is None, f"mapped task {name} was dispatched"
                deps = plan.depends[name]
                assert all(d in ended for d in deps), (name, ended)
                statuses = [ended[d] for d in deps]
                rule = plan.tasks[name].trigger
                failed = sum(s in ("failed", "cancelled") for s in statuses)
                assert {
                    "all_success": all(s == "succeeded" for s in statuses),
                    "all_done": True,
                    "all_failed": failed == len(deps),
                    "one_failed": failed > 0,
                    "one_success": "succeeded" in statuses,
                    "none_failed": failed == 0,
                }[rule], (name, rule, statuses)
                if name == plan.on_exit:  # of the instances, those expanded by then
                    others = {n for n in plan.names if n != name and _existed(n, ended)}
                    assert others <= set(ended), "on_exit ran before every other task ended"

    @invariant()
    def a_flow_with_a_failed_task_never_succeeds(self) -> None:
        for flow in self.flows.values():
            if any(t.status is TaskStatus.FAILED for t in flow.tasks.values()):
                assert flow.status is not FlowStatus.SUCCEEDED

    @invariant()
    def a_mapped_task_ends_as_its_instances_did(self) -> None:
        for flow in self.flows.values():
            latest = {
                e.task: e  # type: ignore[union-attr]
                for e in self.logs[flow.id]
                if event_type(e) == "task_expanded"
            }
            for name, event in latest.items():
                if name not in flow.expanded:  # planned again from scratch since
                    continue
                instances = [flow.tasks[f"{name}[{i}]"] for i in range(event.count)]  # type: ignore[union-attr]
                parent = flow.tasks[name].status
                if parent is TaskStatus.SUCCEEDED:
                    assert all(t.status is TaskStatus.SUCCEEDED for t in instances)
                ended = all(t.status.terminal for t in instances)
                if ended and any(t.status is TaskStatus.FAILED for t in instances):
                    # once they have all ended (an instance that runs after a failure, e.g.
                    # under all_done, may still be running when another one failed)
                    assert parent in (TaskStatus.FAILED, TaskStatus.CANCELLED), parent
                if flow.status.terminal:
                    assert parent.terminal and all(t.status.terminal for t in instances)

    @invariant()
    def a_mapped_task_is_expanded_once_and_waits_for_each_instance_not_ended(self) -> None:
        """... also after retries of it or its instances: they keep the items recorded;
        only a retry that plans it from scratch (after a task before it) lets it read its
        list again."""
        for flow in self.flows.values():
            expansions: Counter[str] = Counter()
            for e in self.logs[flow.id]:
                if event_type(e) == "task_expanded":
                    expansions[e.task] += 1  # type: ignore[union-attr]
                elif isinstance(e, TaskRetried) and flow.plan is not None:
                    for mapped in _replanned(flow.plan, e):
                        expansions[mapped] = 0
            assert all(n <= 1 for n in expansions.values()), expansions
            for name in flow.expanded:
                names = instances(flow.plan, name) if flow.plan else []
                left = sum(not flow.tasks[n].status.terminal for n in names)
                state = flow.fanout.get(name)
                if left and not flow.cancelling:  # a cancel ends it while they run
                    assert flow.tasks[name].status is TaskStatus.PENDING, (name, left)
                if state is not None:
                    assert (state.expanded, state.count, state.left) == (True, len(names), left)

    @invariant()
    def seq_is_gap_free(self) -> None:
        for log in self.logs.values():
            assert [e.seq for e in log] == list(range(1, len(log) + 1))

    @invariant()
    def no_task_succeeds_twice(self) -> None:
        """... between two retries that plan it again (an instance a retry dropped, its
        mapped task planned from scratch, is gone: one expanded later under its name is a
        new task)."""
        for flow_id, log in self.logs.items():
            plan = self.flows[flow_id].plan
            done: Counter[str] = Counter()
            for event in log:
                if isinstance(event, TaskRetried):
                    for again in event.tasks:
                        done[again] = 0
                    for mapped in _replanned(plan, event) if plan is not None else ():
                        for gone in [n for n in done if n.partition("[")[0] == mapped]:
                            done[gone] = 0
                elif event_type(event) == "task_succeeded":
                    done[event.task] += 1  # type: ignore[union-attr]
            assert all(n <= 1 for n in done.values()), done

    @invariant()
    def nothing_starts_after_a_cancel_is_recorded(self) -> None:
        """... until a retry of the ended (failed: fail_fast) flow plans tasks again; after
        a cancel that spares it (fail_fast's, a user's first), nothing but the on_exit task
        (until a cancel that does not)."""
        for flow_id, log in self.logs.items():
            plan = self.flows[flow_id].plan
            on_exit = plan.on_exit if plan is not None else None
            spared: str | None = None
            cancelled = False
            for event in log:
                kind = event_type(event)
                if kind == "task_retried":
                    cancelled, spared = False, None
                elif isinstance(event, FlowCancelRequested):
                    spares = event.spares and (not cancelled or spared is not None)
                    spared = on_exit if spares else None
                    cancelled = True
                elif cancelled and kind in STARTS_WORK:
                    assert getattr(event, "task", "") == spared, (kind, event)

    @invariant()
    def fail_fast_still_runs_the_on_exit_task(self) -> None:
        for flow in self.flows.values():
            assert_on_exit_ran(flow, self.logs[flow.id])

    @invariant()
    def a_cancelled_flow_with_nothing_running_has_ended(self) -> None:
        for flow in self.flows.values():
            # a sparing cancel (fail_fast's, a user's first) leaves the on_exit task to run last
            spared = flow.plan.on_exit if flow.spares_on_exit and flow.plan is not None else None
            others = [t for t in flow.tasks.values() if t.name != spared]
            exit_done = spared is None or flow.tasks[spared].status.terminal
            if flow.cancelling and not any(t.status.active for t in others) and exit_done:
                assert flow.status.terminal, flow.status
            if flow.cancelling:  # only running attempts are waited for (and, under
                # fail_fast, a mapped task whose running instances it ends as)
                waiting = [
                    t.name
                    for t in others
                    if t.status is not TaskStatus.RUNNING
                    and not (spared is not None and _instances_running(flow, t.name))
                ]
                assert all(flow.tasks[n].status.terminal for n in waiting), flow.tasks

    @invariant()
    def ended_flows_stay_ended(self) -> None:
        for flow_id, seq in self.ended.items():
            assert self.flows[flow_id].status.terminal
            assert self.flows[flow_id].seq == seq, "an ended flow got more events"

    @invariant()
    def queue_slots_never_leak(self) -> None:
        assert self.gpu_in_flight() <= GPU_LIMIT
        for flow in self.flows.values():
            active = sum(t.status.active for t in flow.tasks.values())
            holding = sum(
                t.status in (TaskStatus.RETRYING, TaskStatus.QUEUED) for t in flow.tasks.values()
            )
            assert (flow.active, flow.retrying) == (active, holding)
            unfinished = sum(not t.status.terminal for t in flow.tasks.values())
            assert flow.unfinished == unfinished, (flow.unfinished, unfinished)
            if flow.status.terminal:
                assert active == 0 and all(t.status.terminal for t in flow.tasks.values())

    @invariant()
    def the_dispatch_window_holds_and_its_books_match(self) -> None:
        for flow in self.flows.values():
            tasks = flow.tasks.values()
            unstarted = Counter(t.queue for t in tasks if t.status is TaskStatus.DISPATCHED)
            assert unstarted["default"] <= WINDOW, unstarted
            assert dict(flow.unstarted) == dict(unstarted)
            queued = {t.name for t in tasks if t.status is TaskStatus.QUEUED}
            assert {n for names in flow.held.values() for n in names} == queued
            assert flow.plan is None or sorted(
                flow.plan.names[p] for line in flow.line.values() for _, p in line
            ) == sorted(flow.ready)

    @invariant()
    def nothing_waits_for_a_window_with_room(self) -> None:
        for flow in self.flows.values():
            waiting_to_start = flow.status in (FlowStatus.SCHEDULED, FlowStatus.PAUSED)
            if flow.plan is None or flow.failing or flow.cancelling or waiting_to_start:
                continue
            if flow.unstarted.get("default", 0) < WINDOW:
                assert "default" not in flow.held, flow.held
                limit = flow.plan.spec.max_parallel
                slots_full = limit is not None and flow.active + flow.retrying >= limit
                assert slots_full or "default" not in flow.line, (flow.line, flow.unstarted)

    @invariant()
    def every_state_still_reaches_an_end(self) -> None:
        """Resumed, released, timers fired and every attempt finished, the flow ends; the
        log of that run folds to its state."""
        flow = self.flow
        if self.run_to_end.get(flow.id) is flow:  # a step that changed nothing (stale, ...)
            return
        self.run_to_end[flow.id] = flow
        log = list(self.logs[self.current])
        for _ in range(400):
            if flow.status.terminal or not flow.exists:
                break
            command = self.next_step(flow)
            at = NOW if flow.start_at is None else max(NOW, flow.start_at)  # time moves on
            events = decide(flow, command, at, POLICY)
            assert events, (command, flow.status, flow.tasks)
            for event in events:
                flow = evolve(flow, event)
            log.extend(events)
        assert flow.status.terminal or not flow.exists, flow.status
        assert fold(flow.id, log) == flow
        assert_on_exit_ran(flow, log)

    def next_step(self, flow: FoldedFlow) -> Command:
        if flow.paused:
            return Resume()
        if flow.status is FlowStatus.SCHEDULED and not any(due(flow)):
            return FireTimer("start", attempt=flow.updates)  # else: what it waits to read
        tasks = flow.tasks.values()
        for t in tasks:
            if t.status is TaskStatus.DISPATCHED:
                report = AttemptStarted(
                    flow_id=flow.id, task=t.name, attempt=t.attempt, runner="r", token="t", at=NOW
                )
                return RecordStarted(report)
        for t in tasks:
            if t.status is TaskStatus.RUNNING:
                finished = AttemptFinished(
                    flow_id=flow.id, task=t.name, attempt=t.attempt, runner="r", token="t", at=NOW
                )
                return RecordFinished(finished)
        for t in tasks:
            if t.status is TaskStatus.RETRYING:
                return FireTimer("retry", t.name, t.attempt)
        for t in tasks:
            if t.status is TaskStatus.QUEUED and t.queue == "gpu":
                return Release(t.name)
        for name, phase in sorted(due(flow)):  # the shell reads outputs or gathers them
            if phase == CONDITION_PHASE:
                return ReadCondition(name, tuple((o, "go") for _, o in to_read(flow, name)))
            if phase == EXPAND_PHASE:
                return Expand(name, items=("a", "b"))
            return Gather(name, (OutputDigest(name=name, size=2, sha256="00"),))
        raise AssertionError(f"stuck: {flow.status} {dict(flow.tasks)}")


def assert_on_exit_ran(flow: FoldedFlow, log: list[FlowEvent]) -> None:
    """A flow with an on_exit task that ended failed under fail_fast, or cancelled by a
    cancel that spared the on_exit task, ran its on_exit task, unless a cancel that did not
    spare it (a user's second, or one before the start) ended it too."""
    plan = flow.plan
    if plan is None or plan.on_exit is None:
        return
    failed_fast = flow.status is FlowStatus.FAILED and plan.spec.fail_fast
    if not failed_fast and flow.status is not FlowStatus.CANCELLED:
        return
    retried = [i for i, e in enumerate(log) if event_type(e) == "task_retried"]
    since = log[retried[-1] + 1 :] if retried else log
    if any(isinstance(e, FlowCancelRequested) and not e.spares for e in since):
        return
    ran = flow.tasks[plan.on_exit].status
    assert ran in (TaskStatus.SUCCEEDED, TaskStatus.FAILED), (ran, flow.tasks)


DeciderMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_decider_machine = DeciderMachine.TestCase


@st.composite
def mapped_flow_specs(draw: st.DrawFn) -> FlowSpec:
    """A flow whose first task writes a list and whose others may map over it."""
    spec = draw(flow_specs())
    first = next(t for t in spec.tasks if t.name == "t0")
    mapped = [
        msgspec.structs.replace(t, depends=["t0"], map=MapSpec(over="o0"), when=None)
        for t in spec.tasks
        if t is not first
    ]
    return msgspec.structs.replace(spec, tasks=[first, *mapped], delay=None)


class MappedDeciderMachine(DeciderMachine):
    """The same rules and invariants on flows of mapped tasks, without cancels (which end
    most flows before any list is read)."""

    @initialize(spec=mapped_flow_specs())
    def submitted(self, spec: FlowSpec) -> None:
        self.submit(spec, None, ())

    def cancel(self, reason: str) -> None:
        pass

    def cancel_races_a_success(self, data: st.DataObject) -> None:
        pass

    @rule(data=st.data(), downstream=st.booleans())
    def retry_mapped(self, data: st.DataObject, downstream: bool) -> None:
        """A retry of an instance or of an expanded mapped task, whatever its status."""
        flow = self.flow
        names = sorted(n for n in flow.tasks if n in flow.expanded or parent_of(n) is not None)
        if names:
            self.retried(data.draw(st.sampled_from(names)), downstream)

    def runs_on(self, data: st.DataObject, steps: int) -> None:
        """Up to `steps` steps towards the flow's end, some attempts failing."""
        for _ in range(steps):
            if self.flow.status.terminal:
                break
            command = self.next_step(self.flow)
            if isinstance(command, RecordFinished):
                report = command.report
                outcome = data.draw(st.sampled_from(["ok", "ok", "fail"]))
                command = self.report(report.task, report.attempt, outcome)
            self.run(command)

    @rule(data=st.data(), steps=st.integers(1, 25), downstream=st.booleans())
    def runs_on_then_a_mapped_task_is_retried(
        self, data: st.DataObject, steps: int, downstream: bool
    ) -> None:
        """The flow runs on for a while (attempts end, some failing; lists are read), so its
        mapped tasks get expanded and their instances end; then one of them, or an instance,
        is retried."""
        self.runs_on(data, steps)
        self.retry_mapped(data, downstream)

    @rule(data=st.data(), steps=st.integers(1, 25))
    def runs_on_then_the_list_producer_is_retried_downstream(
        self, data: st.DataObject, steps: int
    ) -> None:
        """The flow runs on (lists are read, instances end), then `t0`, whose list every
        mapped task reads, runs again with everything after it: each mapped task is planned
        from scratch and reads its list again (the list_read rule draws a new length)."""
        self.runs_on(data, steps)
        was = self.flow
        self.retried("t0", True)
        if self.flow is not was and self.flow.seq > was.seq:
            assert not self.flow.expanded, "a mapped task kept the items of its old list"
            assert all(parent_of(n) is None for n in self.flow.tasks), "an instance was kept"


MappedDeciderMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
test_mapped_decider_machine = MappedDeciderMachine.TestCase


@st.composite
def gated_flow_specs(draw: st.DrawFn) -> FlowSpec:
    """A flow whose first task writes a decision that the others' conditions read."""
    spec = draw(flow_specs())
    first = next(t for t in spec.tasks if t.name == "t0")
    conditions = ['tasks.t0.outputs.o0 == "go"', "tasks.t0.outputs.o0 != 3 and params.go"]
    gated = [
        msgspec.structs.replace(
            t,
            depends=sorted({"t0", *t.depends}),
            when=draw(st.sampled_from(conditions)),
            map=None,
        )
        for t in spec.tasks
        if t is not first
    ]
    return msgspec.structs.replace(spec, tasks=[first, *gated], delay=None, fail_fast=False)


class GatedDeciderMachine(MappedDeciderMachine):
    """The same rules and invariants on flows whose conditions read an upstream output,
    without cancels (which end most flows before any output is read)."""

    @initialize(spec=gated_flow_specs())
    def submitted(self, spec: FlowSpec) -> None:
        self.submit(spec, None, ())


GatedDeciderMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
test_gated_decider_machine = GatedDeciderMachine.TestCase


@st.composite
def fail_fast_exit_specs(draw: st.DrawFn) -> FlowSpec:
    """A flow with fail_fast and an on_exit task, its tasks run once: a failure ends the
    others whatever runs beside it, and the on_exit task must still run."""
    spec = draw(flow_specs())
    once = RetryPolicy(max_attempts=1)
    # (no maps: the mapped machine covers them)
    tasks = [msgspec.structs.replace(t, retry=once, map=None) for t in spec.tasks]
    on_exit = msgspec.convert(task("exit"), TaskSpec)
    return msgspec.structs.replace(
        spec, tasks=tasks, fail_fast=True, on_exit=on_exit, delay=None, max_parallel=None
    )


class FailFastExitMachine(DeciderMachine):
    """The same rules and invariants on flows with fail_fast and an on_exit task."""

    @initialize(spec=fail_fast_exit_specs())
    def submitted(self, spec: FlowSpec) -> None:
        self.submit(spec, None, ())

    @rule(reason=st.sampled_from(["stop", "again"]))
    def cancel(self, reason: str) -> None:
        """A user's first cancel, which spares the on_exit task (a second ends it too: it
        would hide what this checks)."""
        if not self.flow.user_cancelled:
            super().cancel(reason)


FailFastExitMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
test_fail_fast_exit_machine = FailFastExitMachine.TestCase
