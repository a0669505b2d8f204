"""How `weir` prints what it was asked about: event lines, the flow table, a flow's details,
and a task's log bytes."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, BinaryIO

import msgspec
from rich.table import Column, Table
from rich.text import Text
from weir_proto.api import FlowSummary, FlowView, TaskSummary, TaskView
from weir_proto.events import FlowEvent, FlowSubmitted, TaskExpanded, event_type
from weir_proto.params import render
from weir_proto.status import TaskStatus

from weir.terminal import escape_controls, line, plain, status


def time_of_day(value: datetime | None) -> str:
    """A moment as `HH:MM:SS.mmm`, or `-` for none."""
    return value.strftime("%H:%M:%S.%f")[:-3] if value else "-"


PARAM_SHOWN_MAX = 200
"""Characters of a param's value that `weir show` prints (the rest are in `--json`)."""
EXPANDED_ITEMS_SHOWN = 5
"""Items of a `task_expanded` that `weir events` prints (the rest are in `--json`)."""


def event_line(event: FlowEvent) -> Text:
    """`weir events`: one event a line, its own fields as `key=value`."""
    fields = {
        k: v
        for k, v in msgspec.to_builtins(event).items()
        if k not in ("id", "flow_id", "seq", "at", "type", "spec")
    }
    if isinstance(event, FlowSubmitted):
        fields = {"name": event.spec.name, "tasks": len(event.spec.tasks)}
    if isinstance(event, TaskExpanded) and event.count > EXPANDED_ITEMS_SHOWN:
        shown = event.items[:EXPANDED_ITEMS_SHOWN]
        fields["items"] = f"{msgspec.json.encode(shown).decode()[:-1]}, …]"
    detail = "  ".join(f"{k}={v}" for k, v in fields.items())
    return line(f"{time_of_day(event.at)}  #{event.seq:<4} {event_type(event):<15} ", detail)


def flow_table(rows: Iterable[FlowSummary]) -> Table:
    """`weir flows`: one row per flow, with how many of its tasks run, succeeded, failed."""
    # Ids are never cut: people copy them into the next command.
    table = Table(
        Column("ID", no_wrap=True, min_width=26),
        "NAME",
        "STATUS",
        Column("TASKS", justify="right"),
        Column("RUN", justify="right"),
        Column("OK", justify="right"),
        Column("FAILED", justify="right"),
        "CREATED",
        "UPDATED",
    )
    for flow in rows:
        counts = flow.task_counts
        table.add_row(
            plain(flow.id),
            plain(flow.name),
            status(flow.status),
            str(flow.task_count),
            str(counts.get(TaskStatus.RUNNING, 0)),
            str(counts.get(TaskStatus.SUCCEEDED, 0)),
            str(counts.get(TaskStatus.FAILED, 0)),
            flow.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            flow.updated_at.strftime("%H:%M:%S"),
        )
    return table


def task_table(rows: Iterable[TaskSummary]) -> Table:
    """`weir tasks`: one row per task, with its flow (`weir show FLOW` has the details)."""
    table = Table(
        Column("FLOW", no_wrap=True, min_width=26),
        Column("TASK", no_wrap=True),
        Column("STATUS", no_wrap=True),
        "QUEUE",
        Column("TRY", justify="right"),
        Column("ENDED", no_wrap=True),
        "ERROR",
    )
    for task in rows:
        table.add_row(
            plain(task.flow_id),
            plain(task.name),
            status(task.status),
            plain(task.queue),
            str(task.attempt),
            task.finished_at.strftime("%H:%M:%S") if task.finished_at else "-",
            plain(task.error_type or ""),
        )
    return table


TASK_COLUMN_MAX = 40
"""Widest the TASK column of `weir show` is kept from shrinking (longer names may wrap)."""


INSTANCES_LISTED_MAX = 3
"""A mapped task's instances named one by one in a list of task names; more are counted."""


def task_names(names: Sequence[str]) -> str:
    """Task names for one line: a mapped task's instances `NAME[i]` past a few are given as
    `NAME[0..N-1]` when they run from 0 without a gap, else as a count (`NAME[..], 12 of
    them`), so a retry of a 10,000-item map prints one line, not 10,000 names."""
    order: list[str] = []
    indexes: dict[str, list[int]] = {}
    for name in names:
        head, bracket, rest = name.partition("[")
        if bracket and rest.endswith("]") and rest[:-1].isdigit():
            if head not in indexes:
                order.append(f"[{head}")
            indexes.setdefault(head, []).append(int(rest[:-1]))
        else:
            order.append(name)
    parts: list[str] = []
    for entry in order:
        if not entry.startswith("["):
            parts.append(entry)
            continue
        head = entry[1:]
        found = indexes[head]
        if len(found) <= INSTANCES_LISTED_MAX:
            parts.extend(f"{head}[{i}]" for i in found)
        elif sorted(found) == list(range(len(found))):
            parts.append(f"{head}[0..{len(found) - 1}]")
        else:
            parts.append(f"{head}[..] ({len(found):,} instances)")
    return ", ".join(parts)


def _instances_under_their_task(tasks: Sequence[TaskView]) -> list[TaskView]:
    """The tasks in the flow's order, each mapped task's instances `NAME[i]` right after it
    (they are listed last, in item order, by the scheduler)."""
    instances: dict[str, list[TaskView]] = {}
    for task in tasks:
        head, bracket, _ = task.name.partition("[")
        if bracket:
            instances.setdefault(head, []).append(task)
    if not instances:
        return list(tasks)
    out: list[TaskView] = []
    for task in tasks:
        if "[" not in task.name:
            out.append(task)
            out.extend(instances.pop(task.name, []))
    return out + [t for rest in instances.values() for t in rest]


def flow_details(view: FlowView) -> list[Text | Table]:
    """`weir show`: the flow's header, its problems, its tasks and their failures."""
    parts: list[Text | Table] = [
        line(plain(view.name, "bold"), "  ", view.id, "  ", status(view.status)),
        line(f"created {view.created_at:%Y-%m-%d %H:%M:%S}  updated {view.updated_at:%H:%M:%S}"),
    ]
    if view.tags:
        parts.append(line("tags: ", ", ".join(view.tags)))
    if view.params:
        parts.append(line("params: ", _params_text(view.params)))
    if view.rerun_of:
        parts.append(line("rerun of ", view.rerun_of))
    parts.extend(line("  - ", error.message) for error in view.errors)
    if not view.tasks:
        return parts
    tasks = _instances_under_their_task(view.tasks)
    widest = min(max(len(task.name) for task in tasks), TASK_COLUMN_MAX)
    table = Table("TASK", "STATUS", "ATTEMPT", "STARTED", "DURATION", "EXIT", "DETAIL")
    table.columns[0].min_width = widest  # a mapped task's instances differ only at the end
    for task in tasks:
        duration = "-"
        if task.started_at and task.finished_at:
            duration = f"{(task.finished_at - task.started_at).total_seconds():.3f}s"
        table.add_row(
            plain(task.name),
            status(task.status),
            str(task.attempt),
            time_of_day(task.started_at),
            duration,
            "-" if task.exit_code is None else str(task.exit_code),
            plain((task.error_message or "")[:200]),
        )
    parts.append(table)
    for task in view.tasks:
        for failure in task.failures:
            parts.append(
                line(
                    f"  {task.name} attempt {failure.attempt} {failure.error_type} "
                    f"at {time_of_day(failure.at)}: ",
                    failure.message[:300],
                )
            )
        if task.retry_at and task.status == TaskStatus.RETRYING:
            parts.append(line(f"  {task.name} next attempt at {time_of_day(task.retry_at)}"))
        if task.status == TaskStatus.SKIPPED and task.error_message:
            # In full, on a line of its own: the reason a trigger rule or condition gave.
            parts.append(line(f"  {task.name} skipped: ", task.error_message[:500]))
    return parts


def _params_text(params: dict[str, Any]) -> str:
    """`NAME=VALUE` for each param, by name; a string as it is, anything else as JSON."""
    shown = []
    for name, value in sorted(params.items()):
        text = render(value)
        cut = "…" if len(text) > PARAM_SHOWN_MAX else ""
        shown.append(f"{name}={text[:PARAM_SHOWN_MAX]}{cut}")
    return "  ".join(shown)


class LogOutput:
    """Where `weir logs` writes one stream: the bytes as they are to a file or pipe (or with
    --raw); to a terminal, the text with its control characters escaped. A UTF-8 character
    split between two chunks is decoded whole."""

    def __init__(self, target: BinaryIO, raw: bool) -> None:
        self.target = target
        self.escape = not raw and target.isatty()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")

    def write(self, chunk: bytes, final: bool = False) -> None:
        if self.escape:
            text = escape_controls(self.decoder.decode(chunk, final), keep="\n\t")
            chunk = text.encode("utf-8")
        if chunk:
            self.target.write(chunk)
            self.target.flush()
