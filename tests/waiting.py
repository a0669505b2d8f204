"""How tests wait: for the thing that proves a condition (a row, a file, a process gone), and,
only where nothing can prove an absence, for a named quiet period."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from tests.flows import WAIT
from tests.inspection import inspecting

POLL = 0.05
"""Seconds between two looks at a condition nothing signals."""
SHOWN_CHARS = 300
"""How much of the last value a failed `eventually` shows."""

T = TypeVar("T")


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = WAIT
) -> None:
    """Until `condition` (a function or a coroutine function) holds; fails naming `what`
    after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(POLL)


async def eventually(
    read: Callable[[], Awaitable[T]],
    holds: Callable[[T], bool],
    what: str,
    timeout: float = WAIT,
) -> T:
    """The first value `read()` gives for which `holds` is true (for a test that goes on to
    look at it); fails naming `what`, and showing the last value, after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await read()
        if holds(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            shown = repr(value)[:SHOWN_CHARS]
            raise AssertionError(f"not within {timeout:g}s: {what} (last: {shown})")
        await asyncio.sleep(POLL)


async def quiet_for(seconds: float, why: str) -> None:
    """Let `seconds` pass with nothing to wait for: only where a test asserts that something
    does NOT happen and no event can prove it (say so in `why`). Keep it as short as the
    guarantee under test allows."""
    assert why, "a quiet period says what it gives a chance to happen"
    await asyncio.sleep(seconds)


def process_gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie nobody has reaped yet has ended too)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def outbox_drained(database_url: str) -> bool:
    """Whether the relay has published every recorded event (the outbox is empty)."""
    async with inspecting(database_url) as db:
        return not await db.outbox_count()
