"""What the planner gives back (`Plan`), the bounds it enforces (`Limits`), and how it says
no (`Rejected`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from weir_proto.conditions import Expr
from weir_proto.errors import SpecError, WeirException
from weir_proto.spec import MAX_SUBMIT_BYTES_DEFAULT, MAX_TASKS_DEFAULT, FlowSpec, TaskSpec


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated flow: tasks by name and the edges both ways, in topological order."""

    spec: FlowSpec
    order: tuple[str, ...]
    tasks: Mapping[str, TaskSpec]
    """Each task with the flow's defaults applied: queue, priority, retry are always set."""
    depends: Mapping[str, tuple[str, ...]]
    dependents: Mapping[str, tuple[str, ...]]
    positions: Mapping[str, int]
    """Where each task stands in the submitted list (for display in the user's order)."""
    producers: Mapping[str, str]
    """Output name -> the task that produces it."""
    names: tuple[str, ...] = ()
    """Task names by position: the spec's tasks, then the `on_exit` task if any."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Every parameter's value: the submit's argument, else the default."""
    conditions: Mapping[str, Expr] = field(default_factory=dict)
    """Each task's parsed `when`."""
    on_exit: str | None = None
    """The flow's `on_exit` task: it depends on every other task and runs last."""

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(name for name in self.order if not self.depends[name])

    def descendants(self, name: str) -> list[str]:
        """Every task downstream of `name`, each once."""
        seen: set[str] = set()
        stack = list(self.dependents[name])
        out: list[str] = []
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            out.append(current)
            stack.extend(self.dependents[current])
        return out


@dataclass(frozen=True, slots=True)
class Limits:
    max_tasks: int = MAX_TASKS_DEFAULT
    max_submit_bytes: int = MAX_SUBMIT_BYTES_DEFAULT


LIMITS_DEFAULT = Limits()


class Rejected(WeirException):
    """The submit is not a valid flow. `flow_id`/`name` are set when they could be read."""

    def __init__(
        self, errors: list[SpecError], flow_id: str | None = None, name: str | None = None
    ) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors
        self.flow_id = flow_id
        self.name = name
