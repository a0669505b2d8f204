"""A task's log over HTTP: the text form gives the bytes as written; the SSE form
(`follow=true`) gives each chunk as a JSON string, whole characters only, `\\r` kept."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from weir_web.sse import sse_frame

from tests.flows import shell, task
from tests.web.sse import Sse, read_sse
from tests.web.test_api import events_of, submit

CHUNK_BYTES = 32 * 1024
"""How the runner cuts a log into messages (weir_runner.logship.CHUNK_BYTES)."""
# After one byte, 4-byte characters straddle the 32 KiB boundary; the 3-byte ones that follow
# straddle the 64 KiB and 96 KiB ones.
SPLIT = "a" + "\N{GRINNING FACE}" * 12_000 + "\n" + "\N{EURO SIGN}" * 30_000 + "\nend\n"


def test_the_sample_puts_characters_across_chunk_boundaries() -> None:
    data = SPLIT.encode()
    for boundary in (CHUNK_BYTES, 2 * CHUNK_BYTES, 3 * CHUNK_BYTES):
        assert data[boundary] & 0xC0 == 0x80, boundary  # a continuation byte: a cut character


async def followed(http: httpx.AsyncClient, flow_id: str, task: str) -> list[Sse]:
    async with http.stream(
        "GET", f"/flows/{flow_id}/tasks/{task}/logs", params={"follow": "true"}
    ) as response:
        assert response.status_code == 200
        return [e async for e in read_sse(response)]


def streams_of(events: list[Sse]) -> dict[str, str]:
    """The text of each stream, joined from its events' JSON strings."""
    assert events[-1].event == "end"
    texts: dict[str, str] = {}
    for event in events[:-1]:
        chunk = json.loads(event.data)
        assert isinstance(chunk, str) and "\ufffd" not in chunk, event
        texts[event.event] = texts.get(event.event, "") + chunk
    return texts


async def test_a_character_cut_between_chunks_reaches_the_caller_whole(
    operator: httpx.AsyncClient, tmp_path: Path
) -> None:
    sample = tmp_path / "split.txt"
    sample.write_bytes(SPLIT.encode())
    flow_id = await submit(
        operator,
        {
            "name": "split",
            "tasks": [
                task("out", "cat", str(sample)),
                shell("both", f"cat {sample}; cat {sample} >&2"),
            ],
        },
    )
    assert (await events_of(operator, flow_id))[-1].event == "flow_succeeded"
    text = await operator.get(f"/flows/{flow_id}/tasks/out/logs")
    assert text.status_code == 200 and text.content == SPLIT.encode()
    assert streams_of(await followed(operator, flow_id, "out")) == {"stdout": SPLIT}
    both = streams_of(await followed(operator, flow_id, "both"))
    assert both == {"stdout": SPLIT, "stderr": SPLIT}


async def test_carriage_returns_and_blank_lines_survive_the_event_stream(
    operator: httpx.AsyncClient,
) -> None:
    written = "10%\r20%\r30%\ndone\r\n\n  indented\r"
    flow_id = await submit(
        operator,
        {"name": "progress", "tasks": [task("bar", "printf", "%b", written)]},
    )
    assert (await events_of(operator, flow_id))[-1].event == "flow_succeeded"
    events = await followed(operator, flow_id, "bar")
    assert streams_of(events) == {"stdout": written}
    assert all("\r" not in e.data and "\n" not in e.data for e in events)
    text = await operator.get(f"/flows/{flow_id}/tasks/bar/logs")
    assert text.text == written


def test_no_line_end_in_an_events_data_can_cut_it_short() -> None:
    frame = sse_frame("10%\r20%\r\n30%\nend", "progress")
    assert frame == b"event: progress\ndata: 10%\ndata: 20%\ndata: 30%\ndata: end\n\n"
