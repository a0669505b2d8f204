"""A flow as a waterfall in the terminal, drawn from its events alone (no tracing backend).

One row per task attempt: its status and exit code, how long it waited and ran, and bars on
a common time axis, `░` while it waited in its queue (dispatched until started) and `█`
while it ran (`▒` while it is still running). Skipped tasks are listed under the rows.

>>> print(render(events, width=90))  # doctest: +SKIP
flow diamond  hello-1  failed in 3.21s  (submitted 2026-11-25 18:05:01.120 UTC)
task      try  status           wait    run  |0s                 1.60s              3.21s|
fetch       1  ok               20ms  1.10s  |████████████████                           |
upper       1  lost             60ms  800ms  |               ░███████████                |
upper       2  failed 2        500ms  700ms  |                          ░░░░░░░██████████|
skipped join: upstream upper failed
░ queue wait  █ run  ▒ running

`renderable(events, width)` returns the same as a coloured `rich.text.Text` for a console.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from rich.text import Text
from weir_proto.events import FlowEvent
from weir_proto.status import AttemptState

from weir.telemetry import Attempt, FlowTimeline, flow_timeline

WAIT = "░"
RUN = "█"
RUNNING = "▒"
MIN_BAR_WIDTH = 10
MAX_TASK_WIDTH = 24
MIN_TASK_WIDTH = 8
_STATUS_STYLE = {
    "ok": "green",
    "failed": "red",
    "lost": "red",
    "running": "cyan",
    "waiting": "blue",
    "skipped": "yellow",
    "snoozed": "yellow",
    "cancelled": "yellow",
}


def duration(seconds: float) -> str:
    """Short human form: `850ms`, `1.25s`, `2m05s`, `1h02m`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _status(attempt: Attempt) -> str:
    match attempt.status:
        case AttemptState.SUCCEEDED:
            return "ok" if not attempt.exit_code else f"ok {attempt.exit_code}"
        case AttemptState.FAILED:
            if attempt.error_type == "lost":
                return "lost"
            code = f" {attempt.exit_code}" if attempt.exit_code is not None else ""
            kind = "" if attempt.error_type in (None, "exit_code") else f" {attempt.error_type}"
            return f"failed{code}{kind}"
        case AttemptState.RUNNING:
            return "running"
        case AttemptState.DISPATCHED:
            return "waiting"
        case AttemptState.SNOOZED | AttemptState.CANCELLED as other:
            return other.value


class _Axis:
    def __init__(self, start: datetime, end: datetime, width: int) -> None:
        self.start = start
        self.total = max((end - start).total_seconds(), 1e-6)
        self.width = width

    def col(self, at: datetime) -> float:
        return (at - self.start).total_seconds() / self.total * self.width

    def header(self) -> str:
        """Tick labels at the start, middle and end of the axis."""
        left, mid, right = "0s", duration(self.total / 2), duration(self.total)
        cells = [" "] * self.width
        for i, ch in enumerate(left):
            cells[i] = ch
        middle = max(len(left) + 1, self.width // 2 - len(mid) // 2)
        if middle + len(mid) < self.width - len(right):
            for i, ch in enumerate(mid):
                cells[middle + i] = ch
        for i, ch in enumerate(right):
            pos = self.width - len(right) + i
            if pos >= len(left):
                cells[pos] = ch
        return "".join(cells)


def _bar(attempt: Attempt, axis: _Axis, end: datetime) -> list[tuple[str, str]]:
    """(char, style) cells: blank, then queue wait, then run."""
    cells = [(" ", "")] * axis.width
    if attempt.dispatched_at is None and attempt.started_at is None:
        return cells
    first = attempt.dispatched_at or attempt.started_at
    assert first is not None
    run_end = attempt.finished_at or end
    wait_end = attempt.started_at or run_end
    begin = min(math.floor(axis.col(first)), axis.width - 1)
    run_from = min(math.floor(axis.col(wait_end)), axis.width - 1)
    run_to = max(math.ceil(axis.col(run_end)), run_from + 1)
    for i in range(begin, run_from):
        cells[i] = (WAIT, "dim blue")
    if attempt.started_at is not None:
        char = RUN if attempt.finished else RUNNING
        style = {"succeeded": "green", "failed": "red", "running": "cyan"}.get(
            attempt.status, "yellow"
        )
        for i in range(run_from, min(run_to, axis.width)):
            cells[i] = (char, style)
    elif not attempt.finished:
        cells[begin] = (WAIT, "dim blue")
    return cells


def renderable(events: Iterable[FlowEvent], width: int = 100, now: datetime | None = None) -> Text:
    """The waterfall as rich `Text`. Unfinished attempts extend to `now` (default: the last
    event's time)."""
    events = list(events)
    timeline = flow_timeline(events)
    last = max(e.at for e in events)
    end = timeline.finished_at or max(now or last, last)
    start = timeline.submitted_at or min(e.at for e in events)
    out = Text(no_wrap=True, overflow="crop")
    _title(out, timeline, start, end)
    if not timeline.attempts:
        out.append("no task attempts\n", style="dim")
        _skips(out, timeline)
        return out

    name_w = min(max(len("task"), *(len(a.task) for a in timeline.attempts)), MAX_TASK_WIDTH)
    columns = 2 + 3 + 2 + 14 + 1 + 6 + 1 + 6 + 2 + 2  # try, status, wait, run, borders
    name_w = max(MIN_TASK_WIDTH, min(name_w, width - columns - MIN_BAR_WIDTH))
    fixed = name_w + columns
    axis = _Axis(start, end, max(MIN_BAR_WIDTH, width - fixed))
    head = f"{'task':<{name_w}}  try  {'status':<14} {'wait':>6} {'run':>6}  |{axis.header()}|\n"
    out.append(head, style="bold")
    ordered = sorted(timeline.attempts, key=lambda a: a.dispatched_at or a.started_at or end)
    for attempt in ordered:
        status = _status(attempt)
        wait = attempt.queue_wait_s
        if wait is None and attempt.dispatched_at is not None:
            wait = (end - attempt.dispatched_at).total_seconds()
        run = attempt.run_s
        if run is None and attempt.started_at is not None:
            run = (end - attempt.started_at).total_seconds()
        task = attempt.task if len(attempt.task) <= name_w else attempt.task[: name_w - 1] + "…"
        out.append(f"{task:<{name_w}}  {attempt.attempt:>3}  ")
        out.append(f"{status:<14}", style=_STATUS_STYLE.get(status.split(" ")[0], ""))
        out.append(f" {_opt(wait):>6} {_opt(run):>6}  |")
        for char, style in _bar(attempt, axis, end):
            out.append(char, style=style)
        out.append("|\n")
    _skips(out, timeline)
    out.append(f"{WAIT} queue wait  {RUN} run  {RUNNING} running\n", style="dim")
    return out


def _opt(seconds: float | None) -> str:
    return "-" if seconds is None else duration(seconds)


def _title(out: Text, timeline: FlowTimeline, start: datetime, end: datetime) -> None:
    out.append(f"flow {timeline.name or '?'}  ", style="bold")
    out.append(f"{timeline.flow_id}  ")
    state = timeline.status
    style = {"succeeded": "green", "failed": "red", "rejected": "red"}.get(state, "cyan")
    took = duration((end - start).total_seconds())
    out.append(f"{state} {'in' if timeline.finished else 'for'} {took}", style=style)
    stamp = start.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    zone = f" {start.tzname()}" if start.tzname() else ""
    out.append(f"  (submitted {stamp}{zone})\n", style="dim")


def _skips(out: Text, timeline: FlowTimeline) -> None:
    for decision in timeline.decisions:
        out.append(f"{decision.text}\n", style="dim")
    for skip in timeline.skipped:
        out.append(f"skipped {skip.task}: {skip.reason}\n", style="yellow")


def render(events: Iterable[FlowEvent], width: int = 100, now: datetime | None = None) -> str:
    """The waterfall as plain text (no colour codes), lines cut at `width` columns."""
    lines = renderable(events, width, now).plain.splitlines()
    return "\n".join(line[:width] for line in lines) + "\n"
