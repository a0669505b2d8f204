"""The web UI: one page (plain ES modules and CSS, no build step, docs/ui.md) served for each
of its paths, which the page routes in the browser, and its static files."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
UI_PATHS = (
    "/",
    "/login",
    "/flows",
    "/flows/{flow_id}",
    "/flows/{flow_id}/tasks/{task}",
    "/schedules",
    "/submit",
    "/tasks",
)


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def ui_routes() -> list[BaseRoute]:
    return [
        *(Route(path, index, methods=["GET"]) for path in UI_PATHS),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
