"""Where submit -> started goes, hop by hop, on an idle stack (noop executor).

    .venv/bin/python -m bench.trace_submit [--samples 40] [--code REV] [--workdir DIR]

Per sample: the client's submit until JetStream's ack; until the scheduler decided
(`flow_submitted.at`); until the dispatch reached NATS and the `flow_submitted` event did
(a plain NATS subscriber sees both as they are stored); until the runner started the attempt
(`task_started.at`); until its status report reached NATS. Clocks are one machine's.
Also counts the messages published per flow on each kind of subject, duplicates included
(a plain subscriber sees every publish; JetStream keeps one of each `Nats-Msg-Id`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from weir.client import Client
from weir_proto import subjects

from bench import scenarios
from bench.__main__ import use_code
from bench.measure import Measure
from bench.scenarios import NOOP_CMD
from bench.weirstack import Cluster, single_task

WARM_UP = 2
IDLE = 0.05


async def _sample(svc: Any, samples: int) -> list[dict[str, float]]:
    seen: dict[str, float] = {}
    counts: dict[str, int] = {}

    async def on_msg(msg: Any) -> None:
        seen.setdefault(msg.subject, time.time())
        kind = msg.subject.split(".")[1]
        counts[kind] = counts.get(kind, 0) + 1

    rows: list[dict[str, float]] = []
    nc = await nats.connect(svc.nats_url)
    db = await Measure.connect(svc.database_url)
    try:
        for prefix in (subjects.DISPATCH_PREFIX, subjects.STATUS_PREFIX, subjects.EVENTS_PREFIX):
            await nc.subscribe(f"{prefix}.>", cb=on_msg)
        async with await Client.connect(svc.nats_url, timeout=30.0) as client:
            for i in range(samples):
                flow_id = f"trace-{i}-{int(time.time() * 1000)}"
                t0 = time.time()
                await client.submit({"id": flow_id, **single_task(NOOP_CMD)})
                acked = time.time()
                await asyncio.wait_for(client.wait(flow_id), 30.0)
                at = {r.type: r.at for r in await db.event_times(flow_id)}
                status = [v for k, v in seen.items() if k.startswith(f"weir.status.{flow_id}")]
                rows.append(
                    {
                        "submit acked": acked - t0,
                        "scheduler decided": at["flow_submitted"] - t0,
                        "dispatch on NATS": seen[subjects.dispatch("default", flow_id)] - t0,
                        "flow_submitted on NATS": seen[f"weir.events.{flow_id}.flow_submitted"]
                        - t0,
                        "runner started": at["task_started"] - t0,
                        "status report on NATS": min(status) - t0,
                    }
                )
                await asyncio.sleep(IDLE)
        await asyncio.sleep(1.0)  # a relay's late copies arrive
        for kind, n in sorted(counts.items()):
            print(f"{kind}: {n / samples:.2f} messages per flow")
    finally:
        await db.close()
        await nc.close()
    return rows[WARM_UP:]


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.trace_submit", description=__doc__)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--code", default="tree", help="a git revision to measure (as the bench's)")
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="weir-trace-"))
    print(f"measuring {use_code(args.code, workdir / 'code')}")
    cluster = Cluster(workdir)
    cluster.start()
    try:
        ctx = scenarios.Context(cluster, workdir, 8, "warning", 120.0, None)
        with ctx.services("noop") as svc:
            rows = asyncio.run(_sample(svc, args.samples + WARM_UP))
    finally:
        cluster.stop()
    print(f"ms after the client's submit, {len(rows)} samples: p50 (min, max)")
    for name in rows[0]:
        values = [r[name] * 1000.0 for r in rows]
        print(
            f"  {name:24s} {statistics.median(values):7.2f} ({min(values):.2f}, {max(values):.2f})"
        )


if __name__ == "__main__":
    main()
