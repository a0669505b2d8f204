"""Each endpoint's role is declared once, on its route (`ApiRoute.access`): the caller is
checked against it, and the OpenAPI document states it. Run against the app alone (no NATS:
a role check comes before anything is asked of the backends)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from weir_web.app import create_app
from weir_web.config import Role, WebSettings, parse_tokens
from weir_web.endpoints import API_PREFIX, ApiRoute, Backends, access_name
from weir_web.openapi import openapi_document, serving_route

from tests.web.conftest import TOKENS, tokens_text


async def _no_backends() -> Backends:
    raise AssertionError("a role check needs no backends")


def _app() -> tuple[Starlette, list[ApiRoute]]:
    app = create_app(
        WebSettings(tokens=parse_tokens(tokens_text(), "tokens")), connect=_no_backends
    )
    api = [r for r in app.routes if isinstance(r, Route) and r.path.startswith(API_PREFIX)]
    assert all(isinstance(r, ApiRoute) for r in api), "every /api/v1 route declares its role"
    return app, [r for r in api if isinstance(r, ApiRoute)]


def _operations(routes: list[ApiRoute]) -> list[tuple[str, str, dict[str, Any]]]:
    paths = openapi_document(routes)["paths"]
    return [(path, method, op) for path, ops in paths.items() for method, op in ops.items()]


def test_every_route_is_documented_with_the_role_it_checks() -> None:
    _, routes = _app()
    documented = set()
    for path, method, operation in _operations(routes):
        route = serving_route(routes, path, method)
        assert operation["description"] == f"Role: {access_name(route.access)}.", path
        documented.add((route.path, method.upper()))
    served = {(r.path, method) for r in routes for method in r.methods or () if method != "HEAD"}
    assert served == documented, "a route the OpenAPI document does not describe"


def test_the_roles_of_the_api_as_documented() -> None:
    _, routes = _app()
    roles = {(p, m): op["description"] for p, m, op in _operations(routes)}
    assert roles[("/flows", "get")] == "Role: viewer."
    assert roles[("/flows", "post")] == "Role: operator."
    assert roles[("/flows/{flow_id}/retry", "post")] == "Role: operator."
    assert roles[("/secrets/{name}", "put")] == "Role: admin."
    assert roles[("/session", "post")] == "Role: none."
    assert roles[("/openapi.json", "get")] == "Role: none."


@pytest.mark.parametrize("role", [Role.viewer, Role.operator])
async def test_a_caller_below_a_documented_role_is_refused_before_anything_else(
    role: Role,
) -> None:
    app, routes = _app()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1")
    refused = 0
    for path, method, operation in _operations(routes):
        needed = re.fullmatch(r"Role: (\w+)\.", operation["description"])
        assert needed is not None
        if needed.group(1) not in Role.__members__ or Role[needed.group(1)] <= role:
            continue
        url = API_PREFIX + path.replace("{flow_id}", "f1").replace("{name}", "n1")
        url = url.replace("{task}", "t1")
        response = await client.request(
            method.upper(), url, headers={"Authorization": f"Bearer {TOKENS[role.name]}"}
        )
        assert response.status_code == 403, (method, path, response.text)
        assert f"this needs the {needed.group(1)} role" in response.json()["error"]["message"]
        refused += 1
    await client.aclose()
    assert refused >= (2 if role is Role.operator else 10)
