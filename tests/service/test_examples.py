"""`examples/`: every spec and sweep there is accepted as it stands, and the README's section on
the seeds' experiments names only examples and pictures that exist. No training: the API
checks a spec, and makes a sweep's jobs, without a worker."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
SECTION = "## The seeds' experiments"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_is_accepted(client: TestClient, path: Path) -> None:
    body = json.loads(path.read_text())
    if "grid" in body:  # a sweep: one job per point of the grid
        response = client.post("/sweeps", json=body)
        assert response.status_code == 201, response.text
        points = math.prod(len(values) for values in body["grid"].values())
        assert len(response.json()["jobs"]) == points
    else:
        response = client.post("/jobs", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "queued"


def test_the_readme_runs_every_example_and_shows_its_picture() -> None:
    section = readme_section()
    named = set(re.findall(r"examples/(\w+)\.json", section))
    assert named == {path.stem for path in EXAMPLES}
    assert "python examples/run.py" in section
    pictures = re.findall(r"!\[[^\]]*\]\((docs/examples/[\w.-]+\.png)\)", section)
    assert {Path(p).stem for p in pictures} >= named  # each example's own picture, at least
    for picture in pictures:
        path = ROOT / picture
        assert path.is_file(), f"{picture} is shown in the README but missing"
        assert path.read_bytes()[:8] == PNG_MAGIC, f"{picture} is not a PNG"
        assert path.stat().st_size < 150_000, f"{picture} is too big to commit"
