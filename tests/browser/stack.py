"""A whole weir for the browser: Postgres, NATS JetStream, a scheduler, a runner and
weir-web (with viewer/operator/admin tokens), started in-process on free ports; and Chromium
driven by Playwright, launched as the machine's own browser (Playwright downloads none).

Used by the browser tests (tests/browser/conftest.py) and by the screenshot script
(`python -m tests.browser.screenshots`)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, BrowserContext, Page, Playwright
from weir.config import Settings
from weir.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from weir.secrets import SECRET_KEY_ENV, new_secret_key
from weir_web.config import WebSettings, parse_tokens

from bench.chromium import CHROMIUM_ARGS, chromium_path
from tests.conftest import Services, fresh_database, stack_settings
from tests.web.conftest import SESSION_KEY, TOKENS, Web, tokens_text

CHROMIUM = chromium_path("WEIR_TEST_CHROMIUM")


async def launch(playwright: Playwright) -> Browser:
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(
            f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium, as .ci/run "
            "does) or point WEIR_TEST_CHROMIUM at one"
        )
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


async def start_web(settings: Settings, secret_key: str) -> Web:
    """A weir-web on a free port over the services `settings` reach, with the test tokens,
    session key and secret key (every replica of a deployment has the same)."""
    web = Web(
        WebSettings(
            host="127.0.0.1",
            port=free_port(),
            tokens=parse_tokens(tokens_text(), "tokens"),
            session_key=SESSION_KEY,
        ),
        settings,
        base64.urlsafe_b64decode(secret_key),
    )
    await web.start()
    return web


@dataclass
class Stack:
    """The running services; `api(role)` is an HTTP client of /api/v1 with that role's token."""

    root: Path
    postgres: EmbeddedPostgres
    nats: EmbeddedNats
    services: Services
    web: Web
    secret_key: str

    @classmethod
    async def start(cls, root: Path, postgres: EmbeddedPostgres) -> Stack:
        database_url = await fresh_database(postgres, "b")
        nats = EmbeddedNats(root / "nats")
        nats.start()
        # The runner reads the key from its environment when a task asks for a secret.
        key = new_secret_key()
        os.environ[SECRET_KEY_ENV] = key
        settings = stack_settings(nats.url, database_url, root)
        services = await Services.start(settings)
        web = await start_web(settings, key)
        return cls(root, postgres, nats, services, web, key)

    async def stop(self) -> None:
        for made in self.web.clients:
            await made.aclose()
        await self.web.stop()
        await self.services.stop()
        self.nats.stop()

    @property
    def url(self) -> str:
        return self.web.url

    def api(self, role: str) -> httpx.AsyncClient:
        return self.web.client(role)

    async def submit(self, spec: dict[str, Any]) -> str:
        response = await self.api("operator").post("/flows", json=spec)
        assert response.status_code == 201, response.text
        flow_id: str = response.json()["flow_id"]
        return flow_id


async def logged_in(
    browser: Browser, stack: Stack, role: str, url: str | None = None
) -> tuple[BrowserContext, Page]:
    """A fresh browser context (its own cookies) logged in through the login form of the
    weir-web at `url` (default: the stack's)."""
    url = url or stack.url
    context = await browser.new_context(
        accept_downloads=True, viewport={"width": 1280, "height": 800}
    )
    page = await context.new_page()
    await page.goto(f"{url}/login")
    await page.locator("#token").wait_for()
    assert not await page.locator("#logout").is_visible(), "Log out shown before a login"
    await page.fill("#token", TOKENS[role])
    await page.click("form.login button[type=submit]")
    await page.wait_for_url(f"{url}/flows")
    assert await page.locator("#logout").is_visible()
    return context, page
