"""The web page at `/` and the static files it loads from `/static`.

Both are open even with tokens set: the page holds no data, and asks for a token when the
service needs one. They are left out of the OpenAPI document, whose routes all answer JSON.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from service.api.deps import SettingsDep

#: the page, its script and styles, and the vendored chart library (uPlot, MIT)
STATIC = Path(__file__).resolve().parents[2] / "static"

router = APIRouter(include_in_schema=False)
# served through a route rather than mounted, so that requests for them are timed under the
# route `/static/{path:path}` like every other route
_files = StaticFiles(directory=STATIC)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, settings: SettingsDep) -> HTMLResponse:
    """The page; it says whether the API needs a token and has sweeps, so it asks neither."""
    # from the OpenAPI document (built once, then cached), which names every public path
    paths = request.app.openapi()["paths"]
    html = (
        (STATIC / "index.html")
        .read_text(encoding="utf-8")
        .replace("{{auth}}", "token" if settings.tokens else "open")
        .replace("{{sweeps}}", "yes" if "/sweeps" in paths else "no")
    )
    return HTMLResponse(html)


@router.api_route("/static/{path:path}", methods=["GET", "HEAD"])
async def static(path: str, request: Request) -> Response:
    """A file under `STATIC`; StaticFiles refuses a path that leads outside it (404)."""
    return await _files.get_response(os.path.normpath(path), request.scope)
