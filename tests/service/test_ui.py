"""GET / and /static: the web page and its files, open with tokens set, outside the OpenAPI
document. The page itself is tested in a browser in tests/e2e/test_browser.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.api.routes.ui import STATIC
from service.config import Settings
from service.main import create_app

#: every file the page loads, and the chart library's license
SHIPPED = [
    "index.html",
    "app.js",
    "app.css",
    "favicon.svg",
    "vendor/uplot/uPlot.iife.min.js",
    "vendor/uplot/uPlot.min.css",
    "vendor/uplot/LICENSE",
]


@pytest.fixture
def guarded(db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, api_tokens="alpha")
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_page_says_the_service_is_open(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'data-auth="open"' in page.text
    assert "{{" not in page.text


def test_the_page_and_its_files_need_no_token(guarded: TestClient) -> None:
    assert guarded.get("/jobs").status_code == 401
    page = guarded.get("/")
    assert page.status_code == 200 and 'data-auth="token"' in page.text
    for name in SHIPPED:
        response = guarded.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.content == (STATIC / name).read_bytes()
    assert guarded.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def test_the_page_loads_only_what_is_shipped(client: TestClient) -> None:
    """No CDN: every script, stylesheet and icon the page names is served from /static."""
    page = client.get("/").text
    for name in ["app.js", "app.css", "favicon.svg", "uPlot.iife.min.js", "uPlot.min.css"]:
        assert f"/{name}" in page
    assert "http://" not in page and "https://" not in page


@pytest.mark.parametrize(
    "path",
    ["missing.js", "", "vendor", "%2e%2e/api/deps.py", "..%2F..%2Fconfig.py", "%2Fetc%2Fpasswd"],
)
def test_static_paths_stay_inside_the_folder(client: TestClient, path: str) -> None:
    response = client.get(f"/static/{path}")
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "Not Found"}


def test_the_page_is_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/static") for path in paths)
