"""docs/api.md, the API reference, is kept in step with the app's OpenAPI document.

Each operation has a section headed "### `METHOD /path`" (the path as OpenAPI writes it). The
operations are those of `/openapi.json`, plus `GET /metrics`, which answers Prometheus' text
rather than JSON and so is left out of it. Not operations, and without a section: the web
page and its files (`/`, `/static/...`) and FastAPI's description of the API itself
(`/openapi.json`, `/docs`, `/redoc`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "api.md"
#: documented though not in the OpenAPI document (see the module's docstring)
OUTSIDE_SCHEMA = {("GET", "/metrics")}
#: served but not operations of the API: the web page and its files
PAGE_ROUTES = {("GET", "/"), ("GET", "/static/{path:path}"), ("HEAD", "/static/{path:path}")}
#: files the README names that a run makes (`make bench`), not a clone
MADE_BY_RUNS = {"bench/results.md", "bench/.mlflow-venv"}
HEADING = re.compile(r"^### `([A-Z]+) (/[^`]*)`$", re.MULTILINE)

Operation = tuple[str, str]


def sections(text: str) -> dict[Operation, str]:
    """Each operation's section: from its heading to the next heading of any level up to 3."""
    found: dict[Operation, str] = {}
    headings = list(HEADING.finditer(text))
    for heading in headings:
        rest = text[heading.end() :]
        end = re.search(r"^#{1,3} ", rest, re.MULTILINE)
        operation = (heading[1], heading[2])
        assert operation not in found, f"two sections for {operation}"
        found[operation] = rest[: end.start() if end else len(rest)]
    return found


@pytest.fixture
def openapi(settings: Settings) -> dict[str, Any]:
    return create_app(settings).openapi()


@pytest.fixture(scope="module")
def reference() -> dict[Operation, str]:
    return sections(REFERENCE.read_text(encoding="utf-8"))


def operations(openapi: dict[str, Any]) -> Iterator[tuple[Operation, dict[str, Any]]]:
    for path, by_method in openapi["paths"].items():
        for method, operation in by_method.items():
            yield (method.upper(), path), operation


def served(routes: Iterable[Any]) -> Iterator[Operation]:
    """Every (method, path) the routes answer; FastAPI 0.165 keeps an included router whole."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield from ((method, route.path) for method in route.methods or ())
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from served(inner.routes)


def test_every_operation_has_a_section_and_every_section_an_operation(
    openapi: dict[str, Any], reference: dict[Operation, str]
) -> None:
    in_schema = {operation for operation, _ in operations(openapi)}
    assert set(reference) - in_schema - OUTSIDE_SCHEMA == set(), "sections of no operation"
    assert in_schema - set(reference) == set(), "operations without a section in docs/api.md"
    assert OUTSIDE_SCHEMA <= set(reference)


def test_every_served_route_is_documented_or_the_page(
    settings: Settings, reference: dict[Operation, str]
) -> None:
    assert set(served(create_app(settings).routes)) - PAGE_ROUTES == set(reference)


def test_every_parameter_is_named_in_its_section(
    openapi: dict[str, Any], reference: dict[Operation, str]
) -> None:
    missing = []
    for operation, spec in operations(openapi):
        text = reference[operation].lower()
        for parameter in spec.get("parameters", []):
            if parameter["in"] == "path":
                continue  # in the heading
            # as `name`, `name=...` or `Name: value` (a header)
            if not re.search(f"`{re.escape(parameter['name'].lower())}[`=:]", text):
                missing.append((operation, parameter["in"], parameter["name"]))
    assert missing == []


def test_the_operations_outside_the_schema_answer(client: TestClient) -> None:
    for method, path in OUTSIDE_SCHEMA:
        assert client.request(method, path).status_code == 200, path


def test_the_readme_points_here_and_at_files_a_clone_has() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/api.md)" in readme and "../shared" not in readme
    links = [link for link in re.findall(r"\]\(([^)#\s]+)\)", readme) if "://" not in link]
    shown = re.findall(r"`((?:examples|docs|tests|service|worker|bench|docker)/[^`\s]*)`", readme)
    missing = [path for path in [*links, *shown] if not (ROOT / path).exists()]
    assert [path for path in missing if path not in MADE_BY_RUNS] == []
