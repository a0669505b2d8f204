"""The shell side of stepping in on a flow (`weir update`): the new spec an update asks for,
checked as a submit is (every problem at once), and its start. The decisions themselves
(and pause, resume, retry) live in decider/stepping.py."""

from __future__ import annotations

from datetime import datetime

import msgspec
from weir_proto.api import UpdateRequest
from weir_proto.errors import SpecError, WeirException

from weir_scheduler.decider import FoldedFlow, Update
from weir_scheduler.planner import Limits, Rejected, plan

UPDATABLE = ("priority", "scheduled_at", "params", "tags", "metadata")


class NothingToUpdate(WeirException):
    """An update that names no field to change."""


def update_command(
    flow: FoldedFlow, request: UpdateRequest, limits: Limits, now: datetime
) -> Update:
    """The update of `flow` that `request` asks for. Raises `Rejected` listing every problem
    of the new spec (unknown or mistyped params, a priority out of range, bad tags), and
    `NothingToUpdate` for a request that changes nothing."""
    assert flow.plan is not None
    old = flow.plan.spec
    changes: dict[str, object] = {}
    if request.priority is not None:
        changes["priority"] = request.priority
    if request.params is not None:
        changes["arguments"] = {**old.arguments, **request.params}
    if request.tags is not None:
        changes["tags"] = request.tags
    if request.metadata is not None:
        changes["metadata"] = request.metadata
    start_at = flow.start_at if flow.start_at is not None and flow.start_at > now else None
    if request.start_now and request.scheduled_at is not None:
        raise Rejected(
            [SpecError(path="$.scheduled_at", message="give scheduled_at or start_now, not both")]
        )
    if request.start_now or request.scheduled_at is not None:
        at = request.scheduled_at
        changes["scheduled_at"], changes["delay"] = at, None
        start_at = at if at is not None and at > now else None
    if not changes:
        raise NothingToUpdate(
            f"nothing to update: give at least one of {', '.join(UPDATABLE)} (or start_now)"
        )
    spec = msgspec.structs.replace(old, **changes)
    flow_plan = plan(spec, limits)  # raises Rejected with every problem
    changed = [("params" if key == "arguments" else key) for key in changes if key != "delay"]
    return Update(spec, flow_plan, tuple(changed), start_at)


__all__ = ["NothingToUpdate", "Rejected", "update_command"]
