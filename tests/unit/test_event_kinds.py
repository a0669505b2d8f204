"""The Python bases of the flow events: what the shell reads off an event by its kind
(`TaskEvent`: which task it is about) must hold for every event type, present and future."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest
from weir_proto.events import AttemptEvent, FlowEvent, TaskEvent, event_type

EVENT_TYPES: tuple[type[msgspec.Struct], ...] = get_args(FlowEvent)


@pytest.mark.parametrize("kind", EVENT_TYPES, ids=lambda kind: kind.__name__)
def test_an_event_names_a_task_exactly_when_it_is_a_task_event(kind: type[msgspec.Struct]) -> None:
    names_task = "task" in kind.__struct_fields__
    assert names_task == issubclass(kind, TaskEvent), (
        f"{kind.__name__}: an event with a `task` field extends TaskEvent (the store finds the "
        "task rows an append changes through it), and only such an event"
    )


@pytest.mark.parametrize("kind", EVENT_TYPES, ids=lambda kind: kind.__name__)
def test_an_attempt_event_leads_with_its_task_and_attempt(kind: type[msgspec.Struct]) -> None:
    if issubclass(kind, AttemptEvent):
        fields = kind.__struct_fields__
        assert fields[fields.index("task") :][:2] == ("task", "attempt")


def test_the_bases_are_no_wire_types_and_leave_the_encoding_as_it_was() -> None:
    assert TaskEvent not in EVENT_TYPES and AttemptEvent not in EVENT_TYPES
    started = msgspec.json.decode(
        b'{"type":"task_started","id":"e","flow_id":"f","seq":3,'
        b'"at":"2026-01-01T00:00:00Z","task":"t","attempt":2,"runner":"r"}',
        type=FlowEvent,
    )
    assert event_type(started) == "task_started"
    assert msgspec.json.encode(started) == (  # the order events were logged in before
        b'{"type":"task_started","task":"t","attempt":2,"runner":"r",'
        b'"id":"e","flow_id":"f","seq":3,"at":"2026-01-01T00:00:00Z"}'
    )
