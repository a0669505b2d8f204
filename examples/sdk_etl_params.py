"""The SDK twin of examples/etl-params.yaml: an ETL that takes the day to load as a
parameter, cleans up after itself whether or not the load worked, publishes only in
production, and reports how the flow ended.

    python examples/sdk_etl_params.py --local -p date=2026-12-01
    python examples/sdk_etl_params.py --local -p date=2026-12-01 -p env=prod -p rows=5
    python examples/sdk_etl_params.py --dry-run -p date=2026-12-01     # the spec it builds
    python examples/sdk_etl_params.py --follow -p date=2026-12-01      # on $WEIR_NATS_URL

`publish` is skipped, with the reason, unless `env` is `prod`; `cleanup` runs after `load`
however it ended (`trigger="all_done"`); `report` is the flow's on-exit task and gets the
outcome as its `flow_status` argument. `-p rows=0` makes `load` fail: cleanup and report
still run, and the flow fails.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from weir import Flow

flow = Flow("sdk-etl-params", defaults={"retry": 1, "timeout": 300})


@flow.entry
def etl_params(date: str, env: str = "dev", rows: int = 3) -> None:
    """The flow's params: the day to load (YYYY-MM-DD, required), where, and how many rows."""


def scratch(date: str) -> Path:
    """Where this day's run keeps its files between tasks."""
    return Path(tempfile.gettempdir()) / f"weir-etl-{date}"


@flow.task(serializer="json")
def extract(date: str, rows: int) -> str:
    """Stands in for a download: `rows` lines in a scratch file; its path goes on to load."""
    target = scratch(date) / "rows.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(f"{n}\n" for n in range(1, rows + 1)))
    return str(target)


@flow.task(inputs={"path": extract}, serializer="json")
def load(path: str) -> int:
    """Counts the rows; an empty file is refused, which fails the flow."""
    count = len(Path(path).read_text().splitlines())
    if count == 0:
        raise ValueError(f"{path} has no rows to load")
    return count


@flow.task(depends=[load], when='params.env == "prod"', serializer="text")
def publish(date: str) -> str:
    """Only in production (skipped elsewhere, with the reason)."""
    return f"publishing {date}"


@flow.task(depends=[load], trigger="all_done")
def cleanup(date: str) -> None:
    """Runs after load whether it failed or not."""
    shutil.rmtree(scratch(date), ignore_errors=True)


@flow.on_exit(serializer="text")
def report(date: str, flow_status: str) -> str:
    """Runs last, whatever became of the others, with the flow's outcome."""
    line = f"etl for {date}: {flow_status}"
    print(line)
    return line


if __name__ == "__main__":
    flow.main()
