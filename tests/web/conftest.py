"""weir-web in-process (uvicorn on a free port) over the real scheduler, runner, NATS and
Postgres of tests/conftest.py, and an HTTP client per role. Every response any test receives
is checked for the CSP header and for the absence of CORS headers."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from weir.config import Settings
from weir.embedded import free_port
from weir.secrets import new_secret_key
from weir_web.app import CSP, nats_backends, web_server
from weir_web.config import WebSettings, parse_tokens

from tests.conftest import Services

TOKENS = {
    "viewer": "viewer-token-0123456789",
    "operator": "operator-token-0123456789",
    "admin": "admin-token-0123456789",
}
SESSION_KEY = base64.urlsafe_b64decode(new_secret_key())
"""The key every weir-web of a test run signs session cookies with (as replicas share one)."""
READY_TIMEOUT = 30.0


def check_headers(response: httpx.Response) -> None:
    assert response.headers.get("content-security-policy") == CSP, response.url
    cors = [h for h in response.headers if h.lower().startswith("access-control-")]
    assert not cors, (response.url, cors)


async def _check(response: httpx.Response) -> None:
    check_headers(response)


@dataclass
class Web:
    """A running weir-web; `restart` stops it and starts a new one on the same port."""

    web: WebSettings
    settings: Settings
    secret_key: bytes
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web.port}"

    async def start(self) -> None:
        self.server = web_server(self.web, nats_backends(self.settings, self.secret_key))
        self.task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(READY_TIMEOUT):
            while not self.server.started:
                if self.task.done():
                    self.task.result()
                    raise RuntimeError("weir-web stopped before it started")
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await asyncio.wait_for(self.task, 30)
        self.server = self.task = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def client(self, role: str | None = None, **options: object) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        made = httpx.AsyncClient(
            base_url=f"{self.url}/api/v1",
            headers=headers,
            timeout=60,
            event_hooks={"response": [_check]},
            **options,  # type: ignore[arg-type]
        )
        self.clients.append(made)
        return made


def tokens_text() -> str:
    return "".join(f"{token} {role}\n" for role, token in TOKENS.items())


@pytest.fixture
async def web(services: Services) -> AsyncIterator[Web]:
    tokens = parse_tokens(tokens_text(), "tokens")
    key = new_secret_key()
    running = Web(
        WebSettings(host="127.0.0.1", port=free_port(), tokens=tokens, session_key=SESSION_KEY),
        services.settings,
        base64.urlsafe_b64decode(key),
    )
    await running.start()
    yield running
    for made in running.clients:
        await made.aclose()
    await running.stop()


@pytest.fixture
def operator(web: Web) -> httpx.AsyncClient:
    return web.client("operator")


@pytest.fixture
def viewer(web: Web) -> httpx.AsyncClient:
    return web.client("viewer")


@pytest.fixture
def admin(web: Web) -> httpx.AsyncClient:
    return web.client("admin")


def write_tokens(path: Path) -> Path:
    path.write_text(tokens_text())
    return path


def write_session_key(path: Path, key: bytes = SESSION_KEY) -> Path:
    """A `WEIR_WEB_SESSION_KEY_FILE` holding `key`."""
    path.write_text(base64.urlsafe_b64encode(key).decode() + "\n")
    return path
