"""The planner: turns submitted bytes into a validated flow and its dependency graph.

Every problem is reported (not just the first), each naming the flow, the task and the field,
with what to do about it. Readiness is per task: `Plan.ready_after` gives the tasks whose own
dependencies have all succeeded, whatever order the tasks were listed in.

`decode` (in `reading`) reads a submit's bytes; `plan` (in `graph`) checks names, references
and the graph across the flow; `fields` holds each field's own rules; `result` the `Plan`,
the `Limits` and `Rejected`.
"""

from weir_scheduler.planner.fields import resolve_task
from weir_scheduler.planner.graph import plan, planned
from weir_scheduler.planner.reading import decode
from weir_scheduler.planner.result import Limits, Plan, Rejected

__all__ = ["Limits", "Plan", "Rejected", "decode", "plan", "planned", "resolve_task"]
