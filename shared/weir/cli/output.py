"""How `weir` prints what it was asked about: event lines, the flow table, a flow's details,
and a task's log bytes."""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from datetime import datetime
from typing import BinaryIO

import msgspec
from rich.table import Column, Table
from rich.text import Text
from weir_proto.api import FlowSummary, FlowView
from weir_proto.events import FlowEvent, FlowSubmitted, event_type
from weir_proto.status import TaskStatus

from weir.terminal import escape_controls, line, plain, status


def time_of_day(value: datetime | None) -> str:
    """A moment as `HH:MM:SS.mmm`, or `-` for none."""
    return value.strftime("%H:%M:%S.%f")[:-3] if value else "-"


def event_line(event: FlowEvent) -> Text:
    """`weir events`: one event a line, its own fields as `key=value`."""
    fields = {
        k: v
        for k, v in msgspec.to_builtins(event).items()
        if k not in ("id", "flow_id", "seq", "at", "type", "spec")
    }
    if isinstance(event, FlowSubmitted):
        fields = {"name": event.spec.name, "tasks": len(event.spec.tasks)}
    detail = "  ".join(f"{k}={v}" for k, v in fields.items())
    return line(f"{time_of_day(event.at)}  #{event.seq:<4} {event_type(event):<15} ", detail)


def flow_table(rows: Iterable[FlowSummary]) -> Table:
    """`weir flows`: one row per flow."""
    # Ids are never cut: people copy them into the next command.
    table = Table(
        Column("ID", no_wrap=True, min_width=26), "NAME", "STATUS", "TASKS", "CREATED", "UPDATED"
    )
    for flow in rows:
        table.add_row(
            plain(flow.id),
            plain(flow.name),
            status(flow.status),
            str(flow.task_count),
            flow.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            flow.updated_at.strftime("%H:%M:%S"),
        )
    return table


def flow_details(view: FlowView) -> list[Text | Table]:
    """`weir show`: the flow's header, its problems, its tasks and their failures."""
    parts: list[Text | Table] = [
        line(plain(view.name, "bold"), "  ", view.id, "  ", status(view.status)),
        line(f"created {view.created_at:%Y-%m-%d %H:%M:%S}  updated {view.updated_at:%H:%M:%S}"),
    ]
    if view.tags:
        parts.append(line("tags: ", ", ".join(view.tags)))
    if view.rerun_of:
        parts.append(line("rerun of ", view.rerun_of))
    parts.extend(line("  - ", error.message) for error in view.errors)
    if not view.tasks:
        return parts
    table = Table("TASK", "STATUS", "ATTEMPT", "STARTED", "DURATION", "EXIT", "DETAIL")
    for task in view.tasks:
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
