"""A command line tool's first connection: it says why NATS cannot be reached after two quick
tries, yet once connected it rides out a NATS restart like a long-lived client."""

from __future__ import annotations

import asyncio

import pytest
from weir.embedded import EmbeddedNats, free_port
from weir.jetstream import FIRST_ATTEMPT_WAIT, close, connect


async def test_nothing_listening_is_refused_in_plain_words() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError, match=r"^connection refused$"):
        # endless reconnects afterwards must not mean an endless first connection
        await asyncio.wait_for(connect(url, "test", -1, quiet=True, first_retries=1), 30)


async def test_a_connected_tool_reconnects_after_a_nats_restart(nats_server: EmbeddedNats) -> None:
    nc = await connect(nats_server.url, "test", 10, quiet=True, first_retries=1)
    try:
        sub = await nc.subscribe("restart.check")
        nats_server.stop()
        while nc.is_connected:  # the client notices the server is gone
            await asyncio.sleep(0.01)
        await asyncio.sleep(3 * FIRST_ATTEMPT_WAIT * 2)  # an outage longer than the first tries
        nats_server.start()  # the same port and store
        for _ in range(100):  # reconnects within ~0.5 s; publish until the echo arrives
            await nc.publish("restart.check", b"back")
            try:
                msg = await sub.next_msg(timeout=0.2)
            except TimeoutError:
                continue
            assert msg.data == b"back"
            break
        else:
            pytest.fail("the client never reconnected after the restart")
        assert nc.is_connected
    finally:
        await close(nc)


async def test_a_list_of_servers_and_a_bare_host_port_connect(nats_server: EmbeddedNats) -> None:
    """WEIR_NATS_URL's forms: servers separated by commas (one of them down), HOST:PORT."""
    down = f"nats://127.0.0.1:{free_port()}"
    bare = nats_server.url.removeprefix("nats://")
    for url in (f"{down}, {nats_server.url}", bare):
        nc = await connect(url, "test", 2, quiet=True)
        try:
            assert nc.is_connected
            assert nc.connected_url is not None and nc.connected_url.port == int(bare.split(":")[1])
        finally:
            await close(nc)
