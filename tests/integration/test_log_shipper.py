"""The log shipper of an attempt against a real NATS: finishing it never waits forever, however
its last publish and the finish cross (the runner reports an attempt finished only after)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from weir.embedded import EmbeddedNats
from weir.jetstream import close, connect, ensure_streams
from weir_runner import logship
from weir_runner.attempt_dir import AttemptDir
from weir_runner.logship import LogShipper

from tests.waiting import until

SHIPPERS = 240
AT_ONCE = 8
FINISH_WITHIN = 8.0
"""Seconds a finish may take: one publish in flight (its timeout is 5 s), then the rest."""


async def shipped_to_its_end(js: object, root: Path, n: int) -> bool:
    """One attempt's log written line by line while its shipper follows it, finished at a
    random moment of a publish; whether `finish` returned (in time) with everything shipped."""
    home = AttemptDir(root / f"a{n}")
    home.path.mkdir()
    shipper = LogShipper(js, home, "flow", f"t{n}", 1)  # type: ignore[arg-type]
    shipper.start()
    with open(home.log("stdout"), "ab", buffering=0) as out:
        out.write(b"tick 0\n")
        await until(lambda: shipper.offsets["stdout"] > 0, "the first line shipped")
        for i in range(random.randint(1, 6)):
            out.write(f"tick {i + 1}\n".encode())
            await asyncio.sleep(random.random() / 500)
        out.write(b"through\n")
    try:
        async with asyncio.timeout(FINISH_WITHIN):
            await shipper.finish()
    except TimeoutError:
        assert shipper._task is not None
        shipper._task.cancel()
        return False
    return shipper.offsets["stdout"] == home.log("stdout").stat().st_size


async def test_finishing_never_waits_forever_whenever_it_meets_a_publish(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finish that lands as a publish's ack arrives once lost its cancel of the follower
    (asyncio.wait_for in nats-py's request, Python 3.11): the follower polled on, `finish`
    waited for it forever and the attempt stayed "running". A follower that polls without
    pause is inside a publish most of the time, so hundreds of finishes meet every moment."""
    monkeypatch.setattr(logship, "POLL_SECONDS", 0.0)
    nc = await connect(nats_server.url, "log-shipper-test")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        for first in range(0, SHIPPERS, AT_ONCE):
            results = await asyncio.gather(
                *(shipped_to_its_end(js, tmp_path, n) for n in range(first, first + AT_ONCE))
            )
            stuck = results.count(False)
            assert stuck == 0, f"{stuck} of shippers {first}..{first + AT_ONCE - 1} never finished"
    finally:
        await close(nc)
