"""Stepping in on a flow: pause, resume, retry one task, update a flow not started yet.

Each has a refusal (`*_refusal`: None, or why the command makes no sense for the flow as it
is), which `decide` honours by deciding nothing and the API tells the caller; how `evolve`
plans tasks again after `task_retried` is in `evolve.py`.

- Pause stops new work only: attempts handed out run on and are recorded; retry timers that
  fall due meanwhile wait, and `resume` hands their attempts out.
- Retry runs one failed or succeeded task again. The tasks after it that were skipped or
  cancelled (with `downstream`: every task after it) and the on_exit task are planned
  again, and, when no other task of the flow stays failed, so is every task skipped or
  cancelled so far (a failure skipped them). The flow goes back to running, also from
  `failed` or `succeeded`; a cancelled flow stays cancelled (`weir rerun` runs it again as
  a new flow).
- A mapped task run again alone keeps the items its `task_expanded` recorded. An instance
  `NAME[i]` runs again alone; its mapped task, if it had ended, waits for its instances
  again and ends as they do, and the tasks after it are planned again as after any
  retried task. A retry of an expanded mapped task runs again each of its instances that
  did not succeed (with `downstream` too: succeeded instances keep their results).
- With `downstream`, each expanded mapped task after the retried task is planned from
  scratch: its instances leave the plan (their history stays in the log; a later instance
  of the same name counts its attempts on), and once the tasks before it have run again it
  reads its list again and expands anew, into as many instances as the list has now
  (`transitions.replanned_maps`).
- Refused: a retry that plans again from scratch a mapped task whose instances have not
  all ended (its list would be read again while they run); one that would make any other
  expanded mapped task wait for a task before it (it would have to read its list again:
  only `downstream` does that, for the tasks after the retried one), or plan it again
  while a task before it has not ended (retried meanwhile: its instances would run before
  that task's new list, or its failure, is known); and a retry of a mapped task whose
  instances all succeeded that has nothing to run (without `downstream`).
- Update replaces the spec of a flow no task of which has been handed to a runner.
"""

from __future__ import annotations

from datetime import datetime

from weir_proto.events import FlowPaused, FlowResumed, FlowUpdated, TaskRetried
from weir_proto.status import FlowStatus, TaskStatus
from weir_proto.validation import printable

from weir_scheduler.decider.commands import Pause, Resume, Retry, Update
from weir_scheduler.decider.dispatch import dispatch_ready, hand_out
from weir_scheduler.decider.emitter import Emitter
from weir_scheduler.decider.state import FoldedFlow
from weir_scheduler.decider.transitions import descendants, mapped_parent, replanned_maps
from weir_scheduler.map_plan import instances

RETRYABLE = (TaskStatus.FAILED, TaskStatus.SUCCEEDED)
_REDONE = (TaskStatus.SKIPPED, TaskStatus.CANCELLED)
_LISTED_MAX = 10


def _ended(flow: FoldedFlow) -> str | None:
    if flow.status.terminal:
        return f'flow "{flow.id}" has already ended ({flow.status})'
    if flow.cancelling and flow.status is FlowStatus.CANCELLING:
        return f'flow "{flow.id}" is being cancelled'
    return None


def pause_refusal(flow: FoldedFlow) -> str | None:
    """Why `flow` cannot be paused (None: it can, or is paused already)."""
    ended = _ended(flow)
    return f"{ended}: only a flow that has not ended can be paused" if ended else None


def resume_refusal(flow: FoldedFlow) -> str | None:
    """Why `flow` cannot be resumed (None: it can, or is not paused)."""
    ended = _ended(flow)
    return f"{ended}: there is nothing to resume" if ended else None


def retry_refusal(flow: FoldedFlow, name: str, downstream: bool) -> str | None:
    """Why task `name` of `flow` cannot run again (None: it can)."""
    plan = flow.plan
    if plan is None:
        return f'flow "{flow.id}" was not accepted ({flow.status}): it has no tasks to retry'
    if flow.status is FlowStatus.CANCELLED:
        return (
            f'flow "{flow.id}" was cancelled and stays so: run it again as a new flow with '
            f"`weir rerun {flow.id}`"
        )
    if flow.cancelling and not flow.status.terminal:
        return f'flow "{flow.id}" is being cancelled: retry a task once the flow has ended'
    task = flow.tasks.get(name)
    if task is None:
        names = ", ".join(plan.names[:_LISTED_MAX]) + (", …" if len(plan.names) > 10 else "")
        return f'flow "{flow.id}" has no task {printable(name)} (its tasks: {names})'
    if task.status in _REDONE:
        return (
            f'task "{name}" was {task.status}: only a task that failed or succeeded can be '
            "retried; retry the task it waited for, which plans it again"
        )
    if task.status not in RETRYABLE:
        return (
            f'task "{name}" is {task.status}: only a task that failed or succeeded can be '
            "retried; wait for it to end"
        )
    if name in flow.expanded and task.status is TaskStatus.SUCCEEDED and not downstream:
        return _nothing_to_run(flow, name)
    planned = retry_tasks(flow, name, downstream)
    for again in planned:  # with downstream, a task after it may still be out on a runner
        status = flow.tasks[again].status
        if status.active and again not in flow.expanded:
            return (
                f'task "{again}", which the retry plans again, is {status}: its attempt would '
                "run on beside the new one; retry once it has ended"
            )
    reset = set(planned)
    for mapped in (n for n in planned if n in flow.expanded):
        for before in plan.depends[mapped]:
            status = flow.tasks[before].status
            if before not in reset and not status.terminal:
                return (
                    f'mapped task "{mapped}", which the retry plans again, runs after task '
                    f'"{before}", which is {status}: its instances would run before '
                    f'"{before}" ended; retry once it has ended'
                )
    replanned = replanned_maps(flow, name, downstream)
    for mapped in replanned:
        if any(not flow.tasks[i].status.terminal for i in instances(plan, mapped)):
            return _running_refusal(flow, mapped)
    after_them = sorted(descendants(flow, planned), key=plan.positions.__getitem__)
    for after in after_them:
        status = flow.tasks[after].status
        waits = after in reset or status is TaskStatus.PENDING
        if after in flow.expanded and after not in replanned and waits:
            head = mapped_parent(flow, name) or name
            return _expanded_refusal(flow, after, after in descendants(flow, [head]))
        if after not in reset and not status.terminal and status is not TaskStatus.PENDING:
            return (
                f'task "{after}", which runs after a task the retry plans again, is {status}: '
                "retry once it has ended"
            )
    return None


def _expanded_refusal(flow: FoldedFlow, name: str, after_retried: bool) -> str:
    """Why a retry may not make expanded mapped task `name` wait for a task before it: it
    would have to read its list again, which only `downstream` does, for the mapped tasks
    after the retried one (`name` is one: `after_retried`)."""
    assert flow.plan is not None
    if any(not flow.tasks[n].status.terminal for n in instances(flow.plan, name)):
        return _running_refusal(flow, name)
    instead = (
        "add --downstream to plan it from scratch (it reads its list again)"
        if after_retried
        else "retry a task before it with --downstream, which plans it from scratch"
    )
    return (
        f'mapped task "{name}", which runs after a task the retry plans again, was expanded '
        f"into instances: it would have to read its list again; {instead}, or run the flow "
        f"again with `weir rerun {flow.id} --failed-only`"
    )


def _running_refusal(flow: FoldedFlow, name: str) -> str:
    """Why a retry may not plan again expanded mapped task `name`, whose instances have not
    all ended: its list would be read again while they still run."""
    assert flow.plan is not None
    running = [n for n in instances(flow.plan, name) if not flow.tasks[n].status.terminal]
    shown = ", ".join(f'"{n}"' for n in running[:3]) + (", …" if len(running) > 3 else "")
    return (
        f'mapped task "{name}", which runs after a task the retry plans again, has not '
        f"ended: {len(running):,} of its instances ({shown}) have not ended, and it would "
        "read its list again; retry once it has ended, or cancel the flow and run it again "
        f"with `weir rerun {flow.id}`"
    )


def _nothing_to_run(flow: FoldedFlow, name: str) -> str:
    """Why a retry of mapped task `name`, which succeeded, without `downstream` is refused."""
    assert flow.plan is not None
    count = len(instances(flow.plan, name))
    if count == 0:
        what = f'mapped task "{name}" succeeded with no instances (its list was empty)'
        instead = ""
    else:
        what = f'mapped task "{name}" succeeded, and so did each of its {count:,} instances'
        instead = f"retry one instance (`weir retry {flow.id} '{name}[0]'`), "
    return (
        f"{what}: a retry has nothing to run again; {instead}add --downstream to run the "
        f"tasks after it again, or run the flow again with `weir rerun {flow.id}`"
    )


def update_refusal(flow: FoldedFlow) -> str | None:
    """Why `flow` cannot be updated (None: it can)."""
    if flow.plan is None:
        return f'flow "{flow.id}" was not accepted ({flow.status}): there is nothing to update'
    ended = _ended(flow)
    if ended is not None:
        return f"{ended}: only a flow that has not started can be updated"
    handed = next((t.name for t in flow.tasks.values() if t.attempt > 0), None)
    if handed is not None:
        return _started(flow, f'task "{handed}" was handed to a runner')
    if flow.expanded:
        return _started(flow, f'mapped task "{min(flow.expanded)}" was expanded into instances')
    decided = next(
        (
            t.name
            for t in flow.tasks.values()
            if t.status in RETRYABLE and t.name not in flow.reused
        ),
        None,
    )
    if decided is not None:
        return _started(flow, f'task "{decided}" has ended')
    return None


def _started(flow: FoldedFlow, why: str) -> str:
    return (
        f'flow "{flow.id}" has started ({why}): only a scheduled or pending flow can be '
        "updated; cancel it and submit it again instead"
    )


def retry_tasks(flow: FoldedFlow, name: str, downstream: bool) -> list[str]:
    """The tasks a retry of `name` plans again, in the flow's order (see the module)."""
    plan = flow.plan
    assert plan is not None
    chosen = {name}
    head = name  # the task whose followers the retry plans again
    parent = mapped_parent(flow, name)
    if parent is not None:
        head = parent
        if flow.tasks[parent].status.terminal:
            chosen.add(parent)  # it waits for its instances again
    if name in flow.expanded:
        done = TaskStatus.SUCCEEDED
        chosen.update(n for n in instances(plan, name) if flow.tasks[n].status is not done)
    after = descendants(flow, [head])
    chosen.update(d for d in after if downstream or flow.tasks[d].status in _REDONE)
    if plan.on_exit is not None and flow.tasks[plan.on_exit].status.terminal:
        chosen.add(plan.on_exit)  # it runs last again, with the new outcome
    failed = {n for n, t in flow.tasks.items() if t.status is TaskStatus.FAILED}
    dropped = {i for m in replanned_maps(flow, name, downstream) for i in instances(plan, m)}
    if failed <= chosen | dropped:  # no failure is left to skip them again
        chosen.update(n for n, t in flow.tasks.items() if t.status in _REDONE)
    chosen -= dropped  # they leave the plan
    return sorted(chosen, key=plan.positions.__getitem__)


# decide ---------------------------------------------------------------------------------


def decide_pause(out: Emitter, command: Pause) -> None:
    flow = out.flow
    if not flow.exists or flow.paused or pause_refusal(flow) is not None:
        return
    out.emit(FlowPaused(**out.envelope(), at=out.now, reason=command.reason))


def decide_resume(out: Emitter, _: Resume) -> None:
    flow = out.flow
    if not flow.exists or not flow.paused:
        return
    status = _resumed_status(flow, out.now)
    out.emit(FlowResumed(**out.envelope(), at=out.now, status=str(status)))
    if status is FlowStatus.SCHEDULED:
        return
    plan = out.flow.plan
    assert plan is not None
    for name in plan.order:  # retries that fell due during the pause
        task = out.flow.tasks[name]
        if task.status is TaskStatus.RETRYING and (task.retry_at or out.now) <= out.now:
            hand_out(out, task)
    dispatch_ready(out)


def _resumed_status(flow: FoldedFlow, now: datetime) -> FlowStatus:
    # Its start has come once a task left `pending` (handed out, queued or skipped).
    started = any(
        (t.status is not TaskStatus.PENDING and t.name not in flow.reused) or t.attempt
        for t in flow.tasks.values()
    )
    if not started and flow.start_at is not None and flow.start_at > now:
        return FlowStatus.SCHEDULED
    if any(t.started_at is not None for t in flow.tasks.values()):
        return FlowStatus.RUNNING
    return FlowStatus.PENDING


def decide_retry(out: Emitter, command: Retry) -> None:
    flow = out.flow
    if not flow.exists or retry_refusal(flow, command.task, command.downstream) is not None:
        return
    tasks = retry_tasks(flow, command.task, command.downstream)
    out.emit(
        TaskRetried(
            **out.envelope(),
            at=out.now,
            task=command.task,
            tasks=tasks,
            downstream=command.downstream,
        )
    )
    dispatch_ready(out)


def decide_update(out: Emitter, command: Update) -> None:
    flow = out.flow
    if not flow.exists or update_refusal(flow) is not None:
        return
    out.emit(
        FlowUpdated(
            **out.envelope(),
            at=out.now,
            spec=command.spec,
            changed=list(command.changed),
            start_at=command.start_at,
        )
    )
    if out.flow.status is FlowStatus.PENDING:
        dispatch_ready(out)
