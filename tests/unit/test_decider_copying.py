"""The decider's `replace` copies state exactly as `dataclasses.replace` does (a dataclass:
`FanOut`) and as `msgspec.structs.replace` does (a Struct: `FoldedFlow`, `FoldedTask`)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from weir_proto.status import FlowStatus, TaskStatus
from weir_scheduler.decider import FoldedFlow as Flow
from weir_scheduler.decider.copying import replace
from weir_scheduler.decider.state import FanOut
from weir_scheduler.decider.state import FoldedTask as Task

AT = datetime(2030, 1, 1, tzinfo=UTC)


def test_a_copy_keeps_every_field_not_given_and_takes_those_given() -> None:
    flow = Flow(id="f1", name="etl")
    copied = replace(flow, seq=7, status=FlowStatus.RUNNING, updated_at=AT)
    assert copied == Flow(id="f1", name="etl", seq=7, status=FlowStatus.RUNNING, updated_at=AT)
    assert copied is not flow and flow.seq == 0  # the original is untouched
    fan = FanOut(expanded=True, count=3, left=3)
    assert replace(fan, left=2) == dataclasses.replace(fan, left=2) == FanOut(True, 3, 2)
    task = Task(name="a", queue="default", priority=0)
    assert replace(task, status=TaskStatus.RUNNING, runner="r") == Task(
        name="a", queue="default", priority=0, status=TaskStatus.RUNNING, runner="r"
    )
    assert replace(task) == task and replace(task) is not task


def test_an_unknown_field_is_an_error() -> None:
    with pytest.raises(TypeError):
        replace(Flow(id="f1"), no_such_field=1)
    with pytest.raises(TypeError):
        replace(Task(name="a", queue="default", priority=0), no_such_field=1)


def test_a_class_with_post_init_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            assert self.n >= 0

    with pytest.raises(TypeError, match="plain dataclasses only"):
        replace(Checked(1), n=2)


def test_a_class_without_slots_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain:
        n: int

    with pytest.raises(TypeError, match="with slots only"):
        replace(Plain(1), n=2)


def test_a_field_held_in_a_base_class_slot_is_copied() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Base:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived(Base):
        b: str

    copied = replace(Derived(1, "x"), b="y")
    assert copied == Derived(1, "y") and type(copied) is Derived
