"""SDK flows the tests share. Task processes import this file by path (as
`tests.sdk.pipelines`, the package walk in `weir.sdk.entry`), so it imports only weir and
the standard library."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

from weir import Flow
from weir.sdk import Task

REGIONS = ("north", "south", "west")
BLOB = bytes(range(256)) * 4 + b"\r\n\x00 end"
"""Every byte value, CR LF and NUL: a binary output must arrive unchanged."""


@dataclass(frozen=True)
class Sale:
    region: str
    day: date
    amount: Fraction


@dataclass(frozen=True)
class Summary:
    region: str
    count: int
    total: Fraction
    days: frozenset[date]


sales = Flow("sales", image="python:3.11-slim", defaults={"retry": 1, "timeout": 60})


@sales.task
def extract() -> list[Sale]:
    """Fan-out source: Python objects that JSON could not carry (dates, fractions)."""
    return [Sale(REGIONS[i % 3], date(2024, 1, 1 + i % 5), Fraction(100 + i, 3)) for i in range(30)]


def summarize(region: str) -> Task[[list[Sale]], Summary]:
    """One task per region, made in a loop: the fan-out."""

    @sales.task(name=f"sum-{region}", inputs={"rows": extract})
    def summarize_region(rows: list[Sale]) -> Summary:
        mine = [s for s in rows if s.region == region]
        return Summary(
            region,
            len(mine),
            sum((s.amount for s in mine), Fraction(0)),
            frozenset(s.day for s in mine),
        )

    return summarize_region


summaries = [summarize(region) for region in REGIONS]


@sales.task(inputs=dict(zip(REGIONS, summaries, strict=True)))
def report(**by_region: Summary) -> dict[str, Any]:
    """The fan-in: one parameter per upstream task."""
    return {
        "regions": sorted(by_region),
        "count": sum(s.count for s in by_region.values()),
        "total": sum((s.total for s in by_region.values()), Fraction(0)),
        "days": sorted(set().union(*(s.days for s in by_region.values()))),
    }


@sales.task(inputs={"summary": report}, serializer="bytes")
def blob(summary: dict[str, Any]) -> bytes:
    return BLOB + str(summary["count"]).encode()


@sales.task(depends=[blob])
def notify() -> None:
    """Returns nothing; its output is still a valid file."""


@sales.task(inputs={"nothing": notify, "data": blob}, serializer="json")
def verdict(nothing: None, data: bytes) -> dict[str, Any]:
    return {"none_arrived": nothing is None, "blob_intact": data == BLOB + b"30"}


daily = Flow("daily", defaults={"retry": 1, "timeout": 60})


@daily.entry
def daily_params(
    day: str,
    rows: int = 2,
    scale: float = 1.5,
    dry: bool = False,
    options: dict[str, Any] = {"fast": True},  # noqa: B006 (never mutated: a declaration)
) -> None:
    """The flow's parameters: `day` is required, the others have defaults."""


@daily.task
def make(day: str, rows: int, options: dict[str, Any]) -> list[str]:
    """Gets three of the flow's parameters, typed."""
    return [f"{day}#{i}" for i in range(rows)] + [json.dumps(options, sort_keys=True)]


@daily.task(inputs={"made": make}, serializer="json")
def check(made: list[str], scale: float, dry: bool, unused: int = 7) -> dict[str, Any]:
    """An input and two parameters; `unused` is neither and keeps its default."""
    return {
        "made": made,
        "scale": scale,
        "dry": dry,
        "types": [type(scale).__name__, type(dry).__name__, type(unused).__name__],
    }


words = Flow("words", defaults={"retry": 1, "timeout": 60})


@words.task(serializer="json")
def list_files() -> list[str]:
    """The list to map over: json, as the scheduler reads it."""
    return ["alpha.txt", "beta.txt", "gamma.txt"]


@words.task(map_over={"path": list_files}, max_items=10)
def measure(path: str) -> dict[str, Any]:
    """Once per file: each run gets one item as `path`."""
    return {"file": path, "letters": len(path.removesuffix(".txt"))}


@words.task(inputs={"sizes": measure}, serializer="json")
def total(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' values as one list, in item order."""
    return {"order": [s["file"] for s in sizes], "letters": sum(s["letters"] for s in sizes)}


guarded = Flow("guarded", defaults={"retry": 1, "timeout": 60})
"""Trigger rules, conditions over a parameter and an output, and an on-exit task."""


@guarded.entry
def guarded_params(env: str = "dev", fail: bool = False) -> None:
    """`env` picks the branch; `fail` makes `load` fail."""


@guarded.task(serializer="json")
def decide(env: str) -> str:
    return "go" if env == "prod" else "stop"


@guarded.task(when=f'{decide.output} == "go"', serializer="json")
def deploy() -> str:
    return "deployed"


@guarded.task(when=f'{decide.output} == "stop"', serializer="json")
def hold() -> str:
    return "held"


@guarded.task(depends=[deploy, hold], trigger="one_success")
def join() -> None:
    """Runs after whichever branch ran."""


@guarded.task(depends=[join], serializer="json")
def load(fail: bool) -> int:
    if fail:
        raise RuntimeError("the warehouse refused the load")
    return 3


@guarded.task(depends=[load], when='params.env == "prod"')
def publish() -> None:
    """Only in production, and only after a load that worked."""


@guarded.task(depends=[load], trigger="all_done", serializer="json")
def cleanup() -> str:
    return "cleaned"


@guarded.task(depends=[load], trigger="one_failed", serializer="json")
def alert() -> str:
    return "paged"


@guarded.on_exit(name="report", serializer="json")
def report_outcome(env: str, flow_status: str) -> str:
    return f"{env}: {flow_status}"


flaky = Flow(
    "flaky",
    defaults={"retry": {"max_attempts": 3, "backoff": {"base": 0.05, "jitter": None}}},
)
"""Tasks that fail before they succeed: each attempt leaves a file in `marks`, a directory
every attempt reaches (task processes share no memory), and counts the files before it."""


@flaky.entry
def flaky_params(marks: str) -> None:
    """`marks`: where the attempts leave their marks."""


def _attempt_number(marks: str, name: str) -> int:
    from pathlib import Path

    made = len(list(Path(marks).glob(f"{name}.*"))) + 1
    (Path(marks) / f"{name}.{made}").touch()
    return made


@flaky.task(serializer="json")
def wobbly(marks: str) -> list[int]:
    """Fails on its first attempt; its second succeeds."""
    made = _attempt_number(marks, "wobbly")
    if made < 2:
        raise RuntimeError(f"attempt {made} stumbled")
    return [1, 2]


@flaky.task(map_over={"item": wobbly}, serializer="json")
def each(item: int, marks: str) -> int:
    """Instance 1 fails on its first attempt only; instance 0 never does."""
    if item == 2 and _attempt_number(marks, "each-2") < 2:
        raise RuntimeError("instance 1 stumbled once")
    return item * 10


@flaky.task(inputs={"values": each}, serializer="json")
def tally(values: list[int]) -> int:
    return sum(values)


@flaky.task(depends=[each], retry=2, serializer="json")
def hopeless(marks: str) -> int:
    """Fails on every attempt: its two are spent, and the flow fails."""
    raise RuntimeError(f"attempt {_attempt_number(marks, 'hopeless')} failed")
