"""Browser sessions are signed, expiring cookies: any weir-web with the same key accepts them
(replicas, restarts), none with another key does, and a session ends with its token."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from weir.config import ConfigError
from weir.embedded import free_port
from weir_web.auth import SESSION_COOKIE, Denied, Gate
from weir_web.config import Role, WebSettings, token_digest
from weir_web.session_token import SessionClaims, seal, token_id, unseal

from tests.conftest import Services
from tests.waiting import until
from tests.web.conftest import (
    SESSION_KEY,
    TOKENS,
    Web,
    tokens_text,
    write_session_key,
    write_tokens,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
NOW = 1_800_000_000.0
CLAIMS = SessionClaims(Role.operator, "ab" * 16, int(NOW) + 600, "csrf-secret-123")
SPEC = {"name": "x", "tasks": [{"name": "a", "cmd": ["true"]}]}


def test_a_sealed_session_opens_with_its_key_until_it_expires() -> None:
    cookie = seal(KEY, CLAIMS)
    assert unseal(KEY, cookie, NOW) == CLAIMS
    assert unseal(KEY, cookie, CLAIMS.expires - 1) == CLAIMS
    assert unseal(KEY, cookie, CLAIMS.expires) is None
    assert unseal(OTHER_KEY, cookie, NOW) is None


def test_a_changed_part_of_a_session_cookie_makes_it_worthless() -> None:
    cookie = seal(KEY, CLAIMS)
    parts = cookie.split(".")
    changes = {
        1: "admin",  # a higher role
        2: "cd" * 16,  # another token
        3: str(CLAIMS.expires + 10**6),  # a later expiry
        4: "csrf-known-to-an-attacker",
        5: parts[5][:-2] + ("AA" if not parts[5].endswith("AA") else "BB"),
    }
    for index, value in changes.items():
        forged = ".".join([*parts[:index], value, *parts[index + 1 :]])
        assert unseal(KEY, forged, NOW) is None, index
    # Anything that is not a cookie of this format.
    for junk in ["", ".", "v1", "a.b.c.d.e.f", cookie + ".x", "v2" + cookie[2:], cookie[:-1]]:
        assert unseal(KEY, junk, NOW) is None, junk
    # Claims sealed in the right format but with a role weir does not know.
    odd = dataclasses.replace(CLAIMS, role=Role.admin)
    assert unseal(KEY, seal(KEY, odd).replace("admin", "king"), NOW) is None


def request_with(cookie: str) -> Request:
    headers = [(b"host", b"127.0.0.1:8080"), (b"cookie", f"{SESSION_COOKIE}={cookie}".encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_a_session_ends_when_its_token_leaves_the_tokens_file_or_changes_role(
    tmp_path: Path,
) -> None:
    tokens = write_tokens(tmp_path / "tokens")
    gate = Gate(WebSettings.from_files(("127.0.0.1", 8080), str(tokens)))
    cookie, claims = gate.open_session(TOKENS["operator"])
    assert claims.role == Role.operator
    assert gate.caller(request_with(cookie)).role == Role.operator
    # The cookie names its token by a keyed digest, not the token's own digest.
    assert token_digest(TOKENS["operator"]) not in cookie

    tokens.write_text(tokens_text().replace(f"{TOKENS['operator']} operator\n", ""))
    with pytest.raises(Denied) as ended:
        gate.caller(request_with(cookie))
    assert ended.value.status == 401
    tokens.write_text(tokens_text().replace("operator\n", "viewer\n"))
    with pytest.raises(Denied):
        gate.caller(request_with(cookie))  # demoted: log in again for the new role
    tokens.write_text(tokens_text())
    assert gate.caller(request_with(cookie)).role == Role.operator
    tokens.write_text("not a tokens file at all\n")
    with pytest.raises(Denied):
        gate.caller(request_with(cookie))  # a broken file refuses every token
    tokens.unlink()
    with pytest.raises(Denied):
        gate.caller(request_with(cookie))


def test_a_session_past_half_its_life_is_renewed_with_the_same_csrf_secret() -> None:
    settings = WebSettings(tokens=None, session_key=KEY, session_seconds=1000)
    gate = Gate(settings)
    now = time.time()
    fresh = dataclasses.replace(CLAIMS, expires=int(now + 900))
    assert gate.caller(request_with(seal(KEY, fresh))).renewed is None
    old = dataclasses.replace(CLAIMS, expires=int(now + 400))
    renewed = gate.caller(request_with(seal(KEY, old))).renewed
    assert renewed is not None
    claims = unseal(KEY, renewed, now)
    assert claims is not None and claims.csrf == CLAIMS.csrf and claims.role == CLAIMS.role
    assert claims.expires >= int(now + 1000) - 1


def test_a_shared_address_with_tokens_needs_a_session_key_file(tmp_path: Path) -> None:
    tokens = str(write_tokens(tmp_path / "tokens"))
    env = {"WEIR_WEB_LISTEN": "0.0.0.0:8080", "WEIR_WEB_TOKENS": tokens}
    with pytest.raises(ConfigError, match="WEIR_WEB_SESSION_KEY_FILE is not set"):
        WebSettings.from_env(env)
    key = write_session_key(tmp_path / "key")
    web = WebSettings.from_env({**env, "WEIR_WEB_SESSION_KEY_FILE": str(key)})
    assert web.session_key == SESSION_KEY and web.tokens_file == tokens
    # Loopback may go without one: each start makes a random key.
    assert WebSettings.from_env({"WEIR_WEB_TOKENS": tokens}).session_key is None
    bad = tmp_path / "bad"
    bad.write_text("not-a-key\n")
    with pytest.raises(ConfigError, match=r"WEIR_WEB_SESSION_KEY_FILE=.*32 bytes"):
        WebSettings.from_env({**env, "WEIR_WEB_SESSION_KEY_FILE": str(bad)})
    with pytest.raises(ConfigError, match="cannot be read"):
        WebSettings.from_env({**env, "WEIR_WEB_SESSION_KEY_FILE": str(tmp_path / "absent")})


@asynccontextmanager
async def weir_web_process(
    services: Services, tmp_path: Path, name: str, tokens: Path, key: Path
) -> AsyncIterator[str]:
    """A weir-web process of its own (as another replica is) on a free port; its /api/v1."""
    port = free_port()
    env = {
        **os.environ,
        "WEIR_WEB_LISTEN": f"127.0.0.1:{port}",
        "WEIR_WEB_TOKENS": str(tokens),
        "WEIR_WEB_SESSION_KEY_FILE": str(key),
        "WEIR_NATS_URL": services.settings.nats_url,
    }
    with (tmp_path / f"{name}.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "weir_web", env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with httpx.AsyncClient() as probe:

            async def serving() -> bool:
                assert process.returncode is None, (tmp_path / f"{name}.log").read_text()
                try:
                    return (await probe.get(f"{url}/flows")).status_code == 401
                except httpx.TransportError:
                    return False

            await until(serving, f"weir-web {name} answers")
        yield url
    finally:
        process.terminate()
        await process.wait()


async def test_a_session_of_one_weir_web_is_accepted_by_another_with_the_same_key_only(
    web: Web, services: Services, tmp_path: Path
) -> None:
    login = await web.client().post("/session", json={"token": TOKENS["operator"]})
    assert login.status_code == 201
    cookie = {SESSION_COOKIE: login.cookies[SESSION_COOKIE]}
    csrf = {"X-CSRF-Token": login.json()["csrf"]}
    tokens = write_tokens(tmp_path / "tokens")
    same_key = write_session_key(tmp_path / "key")
    async with (
        weir_web_process(services, tmp_path, "same", tokens, same_key) as other,
        httpx.AsyncClient(base_url=other, cookies=cookie) as browser,
    ):
        assert (await browser.get("/flows")).status_code == 200
        shown = (await browser.get("/session")).json()
        assert shown == {"role": "operator", "csrf": csrf["X-CSRF-Token"]}
        assert (await browser.post("/flows", json=SPEC, headers=csrf)).status_code == 201
        assert (await browser.post("/flows", json=SPEC)).status_code == 403  # still no CSRF
        # The token leaves this replica's tokens file: its sessions end there at once.
        tokens.write_text(tokens_text().replace(f"{TOKENS['operator']} operator\n", ""))
        refused = await browser.get("/flows")
        assert refused.status_code == 401, refused.text

    other_key = write_session_key(tmp_path / "other-key", b"x" * 32)
    write_tokens(tokens)
    async with (
        weir_web_process(services, tmp_path, "other", tokens, other_key) as other,
        httpx.AsyncClient(base_url=other, cookies=cookie) as browser,
    ):
        refused = await browser.get("/flows")
        assert refused.status_code == 401
        assert (await browser.post("/flows", json=SPEC, headers=csrf)).status_code == 401


async def test_logout_clears_the_cookie_and_a_copy_lasts_only_until_it_expires(
    web: Web,
) -> None:
    browser = web.client()
    login = await browser.post("/session", json={"token": TOKENS["viewer"]})
    copied = login.cookies[SESSION_COOKIE]
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    # Behind a proxy that ended TLS (an Ingress), the cookie is Secure.
    behind_tls = await web.client().post(
        "/session", json={"token": TOKENS["viewer"]}, headers={"X-Forwarded-Proto": "https"}
    )
    assert "; secure" in behind_tls.headers["set-cookie"].lower()
    claims = unseal(SESSION_KEY, copied, time.time())
    assert claims is not None
    assert claims.expires <= time.time() + web.web.session_seconds
    logout = await browser.delete("/session", headers={"X-CSRF-Token": login.json()["csrf"]})
    assert logout.status_code == 204
    cleared = logout.headers["set-cookie"].lower()
    assert cleared.startswith(f"{SESSION_COOKIE}=") and "max-age=0" in cleared
    assert (await browser.get("/flows")).status_code == 401
    # As docs/http.md says: a copy taken before the logout works until its expiry, no later.
    thief = web.client()
    thief.cookies[SESSION_COOKIE] = copied
    assert (await thief.get("/flows")).status_code == 200
    expired = dataclasses.replace(claims, expires=int(time.time()) - 1)
    thief.cookies[SESSION_COOKIE] = seal(SESSION_KEY, expired)
    assert (await thief.get("/flows")).status_code == 401
    assert token_id(SESSION_KEY, token_digest(TOKENS["viewer"])) == claims.token_id
