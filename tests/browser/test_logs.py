"""A task's log panel in Chromium against the real stack: a log bigger than the panel keeps
shows its tail with a notice (never a blank panel), progress bars written with `\\r` show as a
terminal would, Copy copies what is shown and `Download raw` saves the bytes as written."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import PageProblems, watched
from tests.browser.stack import Stack, logged_in
from tests.flows import shell, waits_for

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIVE = 60_000
"""Milliseconds to wait for what the services decide (2 cores shared with other work)."""
LOG_RENDER_MAX = 1_000_000
"""Characters the panel keeps (task.js)."""
SHIPPED = 1024 * 1024
"""What the runner ships of a log by default (weir_runner.logship.LOG_LIMIT_DEFAULT)."""
LINE = 100
BIG_LINES = 10_500
"""1.05 MB of 100-byte lines: past both the runner's limit and the panel's."""


def big_line(number: int) -> str:
    return f"line {number:06d} ".ljust(LINE - 1, "x") + "\n"


async def shown(page: Page) -> str:
    text: str = await page.locator("pre.log").evaluate("p => p.textContent")
    return text


async def wait_until_shown(page: Page, expected: str) -> None:
    await page.wait_for_function(
        "t => document.querySelector('pre.log')?.textContent === t", arg=expected, timeout=LIVE
    )


async def check_tail_and_notice(page: Page, flow_id: str) -> None:
    log = page.locator("pre.log")
    await expect(log).to_contain_text(f"log truncated after {SHIPPED:,} bytes", timeout=LIVE)
    text = await shown(page)
    last_whole = SHIPPED // LINE  # the lines the runner shipped whole
    assert big_line(last_whole) in text
    assert "line 000001 " not in text
    assert 0.9 * LOG_RENDER_MAX < len(text) <= LOG_RENDER_MAX
    assert text.startswith("line "), text[:120]  # cut at a line's start
    notice = page.locator("[data-log-cut]")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("not shown")
    link = notice.locator("a")
    assert (await link.get_attribute("href") or "").endswith(
        f"/flows/{flow_id}/tasks/big/logs?attempt=1"
    )


async def test_a_log_past_the_render_cap_shows_its_tail_and_says_the_rest_is_not_shown(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    big.write_text("".join(big_line(n) for n in range(1, BIG_LINES + 1)))
    gate = tmp_path / "big.open"
    flow_id = await stack.submit(
        {
            "name": "big",
            "tasks": [shell("big", f"cat {big}; {waits_for(gate)}")],
        }
    )
    context, page = await watched(browser, stack, "viewer", problems)
    # Followed live: many chunks, the oldest dropped as the newest arrive.
    await page.goto(f"{stack.url}/flows/{flow_id}/tasks/big")
    await check_tail_and_notice(page, flow_id)
    gate.touch()
    await page.wait_for_function(
        "() => document.body.dataset.taskStatus === 'succeeded'", timeout=LIVE
    )
    # Ended: the log arrives in one response, and the panel still shows its tail.
    await page.reload()
    await check_tail_and_notice(page, flow_id)
    await problems.check_and_close(context)


async def test_progress_bars_show_as_a_terminal_would_and_copy_and_download_keep_the_log(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    gate = tmp_path / "progress.open"
    script = (
        "printf '10%%\\r'; sleep 0.5; printf '20%%\\r'; sleep 0.5; "
        "printf '30%%\\nkept\\r\\n\\n  indented\\nabcdef\\rXY\\n'; "
        f"{waits_for(gate)}; printf 'through\\n'"
    )
    flow_id = await stack.submit({"name": "progress", "tasks": [shell("bar", script)]})
    context, page = await logged_in(browser, stack, "operator")
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    problems.watch(page)
    terminal = "30%\nkept\n\n  indented\nXYcdef\n"
    await page.goto(f"{stack.url}/flows/{flow_id}/tasks/bar")
    await wait_until_shown(page, terminal)
    gate.touch()
    await wait_until_shown(page, terminal + "through\n")
    await page.wait_for_function(
        "() => document.body.dataset.taskStatus === 'succeeded'", timeout=LIVE
    )
    await page.reload()
    await wait_until_shown(page, terminal + "through\n")

    await page.click("[data-panel=log] button:text('Copy')")
    await expect(page.locator("[data-panel=log] button:text('Copied')")).to_be_visible()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == terminal + "through\n"
    async with page.expect_download() as waiting:
        await page.click("text=Download raw")
    download = await waiting.value
    assert download.suggested_filename == f"{flow_id}-bar-1.log"
    saved = tmp_path / "bar.log"
    await download.save_as(saved)
    assert saved.read_bytes() == b"10%\r20%\r30%\nkept\r\n\n  indented\nabcdef\rXY\nthrough\n"
    await problems.check_and_close(context)


TERMINAL_CASES: list[tuple[list[str], str, str]] = [
    # (what is written, in pieces; the lines completed; the line being written)
    (["10%\r", "20%\r", "30%\n"], "30%\n", ""),
    (["abcdef\rXY"], "", "XYcdef"),
    (["foo\r", "\nbar"], "foo\n", "bar"),  # "\r\n" cut between two chunks
    (["a\r\n\n  b\r"], "a\n\n", "  b"),
    (["one\ntwo", " three\n"], "one\ntwo three\n", ""),
    (["x" * (LOG_RENDER_MAX + 1)], "x" * (LOG_RENDER_MAX + 1), ""),  # a line is never unbounded
]


async def test_a_terminal_line_is_overwritten_after_a_carriage_return(
    browser: Browser, stack: Stack
) -> None:
    context, page = await logged_in(browser, stack, "viewer")
    seen = await page.evaluate(
        """async (cases) => {
          const { TerminalLine } = await import('/static/js/logtail.js');
          return cases.map(([pieces]) => {
            const line = new TerminalLine();
            const done = pieces.map((p) => line.write(p)).join("");
            return [done, line.line];
          });
        }""",
        TERMINAL_CASES,
    )
    assert seen == [[done, line] for _, done, line in TERMINAL_CASES]
    await context.close()
