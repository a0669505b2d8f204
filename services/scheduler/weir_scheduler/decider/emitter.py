"""Numbering and folding the events one decision emits."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from weir_proto.events import FlowEvent
from weir_proto.ids import event_id

from weir_scheduler.decider.commands import Policy
from weir_scheduler.decider.evolve import evolve
from weir_scheduler.decider.state import FoldedFlow


class Envelope(TypedDict):
    id: str
    flow_id: str
    seq: int


class Emitter:
    """Numbers events and folds each into the state so later decisions see earlier ones."""

    def __init__(self, flow: FoldedFlow, now: datetime, policy: Policy) -> None:
        self.flow = flow
        self.now = now
        self.policy = policy
        self.events: list[FlowEvent] = []

    def envelope(self) -> Envelope:
        seq = self.flow.seq + 1
        return {"id": event_id(self.flow.id, seq), "flow_id": self.flow.id, "seq": seq}

    def emit(self, event: FlowEvent) -> None:
        self.events.append(event)
        self.flow = evolve(self.flow, event)
