"""One Chromium and one weir stack for all the browser tests (each test opens its own
browser context, so cookies are not shared); see stack.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from weir.embedded import EmbeddedPostgres

from tests.browser.stack import Stack, launch, logged_in


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await launch(playwright)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(
    postgres: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    running = await Stack.start(tmp_path_factory.mktemp("browser"), postgres)
    yield running
    await running.stop()


class PageProblems:
    """Everything a page complained about: script errors, CSP refusals, dialogs."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console: {msg.text}")
                if msg.type == "error" and "Content Security Policy" in msg.text
                else None
            ),
        )

        async def on_dialog(dialog: object) -> None:
            self.dialogs.append(getattr(dialog, "message", "?"))
            await dialog.dismiss()  # type: ignore[attr-defined]

        page.on("dialog", on_dialog)
        return page

    async def check_and_close(self, context: BrowserContext) -> None:
        """Fails the test if a watched page complained or opened a dialog, then closes
        `context` (a test's last step)."""
        assert not self.errors and not self.dialogs, (self.errors, self.dialogs)
        await context.close()


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


async def watched(
    browser: Browser, stack: Stack, role: str, problems: PageProblems
) -> tuple[BrowserContext, Page]:
    """A page logged in as `role` whose errors and dialogs `problems` collects."""
    context, page = await logged_in(browser, stack, role)
    problems.watch(page)
    return context, page


class OpenFlow(Protocol):
    async def __call__(
        self, spec: dict[str, Any], role: str, below: str = ""
    ) -> tuple[str, BrowserContext, Page]: ...


@pytest.fixture
def open_flow(browser: Browser, stack: Stack, problems: PageProblems) -> OpenFlow:
    """Submits a flow and opens its page (or the one at `below` it) as `role`, in a page
    `problems` watches: the flow's id, the context and the page."""

    async def open_(
        spec: dict[str, Any], role: str, below: str = ""
    ) -> tuple[str, BrowserContext, Page]:
        flow_id = await stack.submit(spec)
        context, page = await watched(browser, stack, role, problems)
        await page.goto(f"{stack.url}/flows/{flow_id}{below}")
        return flow_id, context, page

    return open_
