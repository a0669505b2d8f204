"""An ETL flow written with the weir SDK: no YAML.

    python examples/sdk_etl.py --dry-run        # print the flow spec it builds
    python examples/sdk_etl.py --local          # run every task here, no services needed
    python examples/sdk_etl.py --follow         # submit to $WEIR_NATS_URL and watch it
    python examples/sdk_etl.py --local -p start=2024-04-01 -p min_cents=800   # params

`extract` fans out to one `clean-*` task per shard, `combine` fans them back in, `report`
renders text. The flow's params are the arguments of `sdk_etl` (`@flow.entry`); a task takes
one by naming it. Every task runs in its own process (`python -m weir.sdk.entry` imports this
file and calls the one function the runner asked for).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

from weir import Flow
from weir.sdk import Task

SHARDS = 3

flow = Flow(
    "sdk-etl",
    image="python:3.11-slim",  # used by the Kubernetes executor (which needs weir installed)
    defaults={"retry": 2, "timeout": 300},
)


@dataclass(frozen=True)
class Order:
    id: int
    day: date
    city: str
    cents: int


@flow.entry
def sdk_etl(start: str = "2024-03-01", min_cents: int = 600) -> None:
    """The flow's params: the first day to read, and the smallest order that counts."""


@flow.task
def extract(start: str) -> list[Order]:
    """Stands in for reading a source system (from the day the `start` param names)."""
    cities = ["Lyon", "Oslo", "Porto", "Kyoto"]
    first = date.fromisoformat(start)
    return [
        Order(i, first + timedelta(days=i % 7), cities[i % 4], 500 + (i * 37) % 900)
        for i in range(120)
    ]


def clean(shard: int) -> Task[[list[Order]], Counter[str]]:
    """One task per shard: drop orders below the `min_cents` param, total cents per city."""

    @flow.task(name=f"clean-{shard}", inputs={"orders": extract}, retry=3)
    def clean_shard(orders: list[Order], min_cents: int) -> Counter[str]:
        totals: Counter[str] = Counter()
        for order in orders:
            if order.id % SHARDS == shard and order.cents >= min_cents:
                totals[order.city] += order.cents
        return totals

    return clean_shard


shards = [clean(shard) for shard in range(SHARDS)]


@flow.task(inputs={f"shard{i}": task for i, task in enumerate(shards)}, serializer="json")
def combine(**shards: Counter[str]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counts in shards.values():
        total += counts
    return dict(sorted(total.items()))


@flow.task(inputs={"totals": combine}, serializer="text")
def report(totals: dict[str, int]) -> str:
    width = max(map(len, totals))
    return "\n".join(f"{city:<{width}}  {cents / 100:>10.2f}" for city, cents in totals.items())


if __name__ == "__main__":
    flow.main()
