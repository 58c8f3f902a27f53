"""Error answers quote at most a few hundred characters of what the client sent (API.md
section 8): a 10 MB field is refused with a small body that still names the field and its
limit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.responses import ECHOED, LISTED_ERRORS
from service.config import Settings
from tests.conftest import fit_spec

#: ten million characters: within DESCENT_MAX_UPLOAD_BYTES (50 MB), far past any field's limit
HUGE = "n" * 10_000_000
#: the most bytes an answer to one bad field may take
SMALL = 4096


def test_the_huge_string_is_within_the_body_limit(settings: Settings) -> None:
    # else the 422s below would be 413s, and prove nothing
    assert len(HUGE) * 2 < settings.max_upload_bytes


def refused(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text[:1000]
    assert len(response.content) < SMALL, response.text[:1000]
    return response.json()["detail"]  # type: ignore[no-any-return]


def test_a_huge_name_is_named_with_its_limit_not_echoed(client: TestClient) -> None:
    [error] = refused(client.post("/jobs", json=fit_spec(name=HUGE)))
    assert error["loc"][-1] == "name" and error["type"] == "string_too_long"
    assert error["ctx"] == {"max_length": 200}
    assert error["input"].startswith("n" * ECHOED)
    assert error["input"].endswith("... (10000000 characters)")
    assert client.get("/jobs").json()["items"] == []


def test_a_huge_string_in_a_list_field(client: TestClient) -> None:
    spec = fit_spec(model={"type": "mlp", "hidden": [8, HUGE]})
    [error] = refused(client.post("/jobs", json=spec))
    assert error["loc"][-2:] == ["hidden", 1] and error["type"] == "int_type"
    assert error["input"].endswith("(10000000 characters)")


def test_a_huge_key_is_cut_in_the_location(client: TestClient) -> None:
    [error] = refused(client.post("/jobs", json={**fit_spec(), HUGE: 1}))
    assert error["type"] == "extra_forbidden"
    assert error["loc"][-1].endswith("(10000000 characters)")


def test_a_message_that_quotes_the_input_keeps_its_end(client: TestClient) -> None:
    [error] = refused(client.post("/jobs", json=fit_spec(optimizer={"type": HUGE})))
    assert error["loc"][-1] == "optimizer"
    assert "does not match any of the expected tags: 'sgd'" in error["msg"]
    assert error["ctx"]["tag"].endswith("(10000000 characters)")


def test_a_huge_list_is_described_not_echoed(client: TestClient) -> None:
    # a model-level error echoes the object it was given: 100,000 rows of it
    spec = fit_spec(model={"type": "softmax", "bogus": [0.5] * 100_000})
    [error] = refused(client.post("/jobs", json=spec))
    assert error["type"] == "extra_forbidden" and error["loc"][-1] == "bogus"
    assert error["input"] == "a list of 100000 items"


def test_many_errors_are_counted_past_the_first(client: TestClient) -> None:
    rows = 50_000
    spec = fit_spec(data={"type": "inline", "x": [["a"]] * rows, "y": [0] * rows})
    errors = refused(client.post("/jobs", json=spec))
    assert len(errors) == LISTED_ERRORS + 1
    last = errors[-1]
    assert last["type"] == "too_many_errors"
    assert "more errors" in last["msg"] and int(last["msg"].split()[0]) > rows - LISTED_ERRORS


def test_a_huge_sweep_path(client: TestClient) -> None:
    body = {"base": fit_spec(), "grid": {HUGE[:100_000]: [1, 2]}}
    errors = refused(client.post("/sweeps", json=body))
    assert errors[0]["loc"][:2] == ["body", "grid"]
    assert client.get("/sweeps").json()["items"] == []


def test_a_huge_target_form_field_on_upload(client: TestClient) -> None:
    # under the multipart parser's 1 MB a field; past it that parser answers 400
    target = "t" * 500_000
    files = {"file": ("d.csv", b"x,y\n1,2\n", "text/csv")}
    [error] = refused(client.post("/datasets", files=files, data={"target": target}))
    assert error["loc"] == ["body", "target"] and error["type"] == "string_too_long"
    assert error["ctx"] == {"max_length": 200}
    assert client.get("/datasets").json()["items"] == []


@pytest.mark.parametrize("path", ["/jobs/{}", "/datasets/{}", "/sweeps/{}"])
def test_a_long_id_in_a_404_is_cut(client: TestClient, path: str) -> None:
    response = client.get(path.format("j" * 30_000))
    assert response.status_code == 404
    assert len(response.content) < 1024, response.text[:1000]
    assert "30" in response.json()["detail"] and "characters" in response.json()["detail"]


def test_a_cell_quoted_in_an_upload_error_is_cut(client: TestClient) -> None:
    cell = "z" * 100_000  # under the csv module's 128 KB a field
    files = {"file": ("d.csv", f"x,y\n1,2\n{cell},3\n".encode(), "text/csv")}
    response = client.post("/datasets", files=files)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) < 400 and detail.startswith("row 3, column 'x': 'zzz")
    assert "(100000 characters) is not a number" in detail
