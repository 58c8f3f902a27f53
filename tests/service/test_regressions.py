"""Inputs that once answered 500 (or were taken against the schema), and malformed requests sent
by hand: each is refused with a 4xx whose body is valid JSON, and nothing is stored.

Those that reached the database run on both backends: PostgreSQL refuses what SQLite stores (a
NUL character, a string longer than its column, an integer past 32 bits).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from tests.conftest import both_backends, fit_spec
from worker.claims import Worker

JSON = {"content-type": "application/json"}
CSV = b"a,b,y\n1,2.5,0\n-3,4e-3,1\n0.1,6,2\n"


def refused(response: httpx.Response, status: int = 422) -> Any:
    """The answer's JSON body, checked to be strict JSON (no bare NaN or Infinity)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return json.loads(response.text, parse_constant=lambda token: pytest.fail(f"bare {token}"))


def locs(response: httpx.Response) -> list[list[Any]]:
    return [e["loc"] for e in refused(response)["detail"]]


def nothing_stored(client: TestClient) -> None:
    assert client.get("/jobs").json()["items"] == []


def upload(client: TestClient, content: bytes = CSV, filename: str = "d.csv", **form: str) -> Any:
    return client.post("/datasets", files={"file": (filename, content, "text/csv")}, data=form)


# --- found by the fuzzer, or by hand around what it found ------------------------------------


@both_backends
@pytest.mark.parametrize("path", ["/jobs", "/datasets"])
@pytest.mark.parametrize(
    "cursor",
    [
        "²",  # str.isdigit() takes it, int() does not
        "١٢",  # Arabic-Indic digits: int() reads 12
        "9" * 30,  # past SQLite's 64-bit integers
        str(2**31),  # past PostgreSQL's 32-bit keys
        "\x00",
    ],
)
def test_a_cursor_the_service_never_gave_out_is_422(
    client: TestClient, path: str, cursor: str
) -> None:
    assert locs(client.get(path, params={"cursor": cursor})) == [["query", "cursor"]]


@both_backends
@pytest.mark.parametrize("after", [str(2**31), str(-(2**31) - 1), "9" * 30, "-" + "9" * 30])
def test_after_past_the_step_column_is_422(
    client: TestClient, settings: Settings, after: str
) -> None:
    job = client.post("/jobs", json=fit_spec(epochs=1)).json()
    assert Worker(settings, device="cpu").run_one()  # the 500 needed stored points
    response = client.get(f"/jobs/{job['id']}/curves", params={"after": after})
    assert locs(response) == [["query", "after"]]
    last = client.get(f"/jobs/{job['id']}/curves", params={"after": str(2**31 - 1)})
    assert last.status_code == 200 and last.json()["series"]["loss"]["steps"] == []


@both_backends
@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"epochs": 10**30}, ["body", "fit", "epochs"]),
        ({"batch_size": 10**30}, ["body", "fit", "batch_size"]),
        (
            {"schedule": {"type": "step", "step_size": 10**30}},
            ["body", "fit", "schedule", "step", "step_size"],
        ),
        (
            {"model": {"type": "mlp", "hidden": [10**30]}},
            ["body", "fit", "model", "mlp", "hidden", 0],
        ),
        (
            {"data": {"type": "linear", "n_samples": 10**30}},
            ["body", "fit", "data", "linear", "n_samples"],
        ),
        ({"seed": 10**30}, ["body", "fit", "seed"]),
    ],
)
def test_integers_past_64_bits_are_422_and_echoed_as_digits(
    client: TestClient, overrides: dict[str, Any], loc: list[Any]
) -> None:
    # orjson writes no integer past 64 bits: the spec stored it (500), or the 422 echoed it (500)
    [error] = refused(client.post("/jobs", json=fit_spec(**overrides)))["detail"]
    assert error["loc"] == loc
    assert error["input"] == str(10**30)
    nothing_stored(client)


def test_an_inline_target_past_64_bits_is_refused_as_too_large(client: TestClient) -> None:
    # once taken as the float 1e30; its square overflows float32, so it is past the bound now
    data = {"type": "inline", "x": [[0.0], [1.0], [2.0]], "y": [1, 2, 10**30]}
    errors = refused(client.post("/jobs", json=fit_spec(data=data, batch_size=None)))["detail"]
    assert {tuple(e["loc"][:6]) for e in errors} == {("body", "fit", "data", "inline", "y", 2)}
    assert any("1e12" in e["msg"] for e in errors)
    nothing_stored(client)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"name": "\\ud800"}', ["body", "fit", "name"]),
        (b'{"name": "ok", "\\udfff": 1}', ["body", "fit"]),
        (
            b'{"data": {"type": "dataset", "id": "\\ud800"}}',
            ["body", "fit", "data", "dataset", "id"],
        ),
    ],
)
def test_a_lone_surrogate_is_422(client: TestClient, body: bytes, loc: list[Any]) -> None:
    # json.loads takes "\ud800"; orjson cannot write it back, nor can the database store it
    response = client.post("/jobs", content=body, headers=JSON)
    assert loc in locs(response)
    nothing_stored(client)


@both_backends
@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"name": "a\x00b"}, ["body", "fit", "name"]),
        ({"data": {"type": "dataset", "id": "x\x00"}}, ["body", "fit", "data", "dataset", "id"]),
        ({"device": "cuda:" + "1" * 20}, ["body", "fit", "device"]),  # the column holds 16
    ],
)
def test_text_postgresql_cannot_store_is_422(
    client: TestClient, overrides: dict[str, Any], loc: list[Any]
) -> None:
    assert locs(client.post("/jobs", json=fit_spec(**overrides))) == [loc]
    nothing_stored(client)


@both_backends
@pytest.mark.parametrize(
    ("url", "loc"),
    [
        ("/jobs/a%00b", ["path", "job_id"]),
        ("/jobs/a%00b/curves", ["path", "job_id"]),
        ("/jobs/abc/curves?names=lo%00ss", ["query", "names"]),
        ("/datasets/a%00b", ["path", "dataset_id"]),
    ],
)
def test_a_nul_in_an_id_or_a_name_is_422(client: TestClient, url: str, loc: list[Any]) -> None:
    assert locs(client.get(url)) == [loc]


@both_backends
def test_uploads_postgresql_cannot_store(client: TestClient) -> None:
    assert locs(upload(client, name="x\x00")) == [["body", "name"]]
    assert locs(upload(client, target="y\x00")) == [["body", "target"]]
    header = refused(upload(client, b"a\x00,y\n1,2\n"))
    assert header == {"detail": "column 1's name has a NUL character"}
    assert client.get("/datasets").json()["items"] == []
    # a file's name longer than the column takes names the dataset, cut to fit
    long = upload(client, filename="x" * 300 + ".csv")
    assert long.status_code == 201, long.text
    assert long.json()["name"] == "x" * 200


@pytest.mark.parametrize(
    ("optimizer", "loc"),
    [
        ({"type": "adam", "amsgrad": 0}, ["body", "fit", "optimizer", "adam", "amsgrad"]),
        (
            {"type": "adamw", "weight_decay": False},
            ["body", "fit", "optimizer", "adamw", "weight_decay"],
        ),
        ({"type": "sgd", "lr": "0.1"}, ["body", "fit", "optimizer", "sgd", "lr"]),
    ],
)
def test_a_value_of_another_type_is_422(
    client: TestClient, optimizer: dict[str, Any], loc: list[Any]
) -> None:
    # pydantic's lax mode took these, against the schema
    assert locs(client.post("/jobs", json=fit_spec(optimizer=optimizer))) == [loc]
    assert locs(client.post("/jobs", json=fit_spec(epochs="3"))) == [["body", "fit", "epochs"]]
    assert locs(client.post("/jobs", json=fit_spec(shuffle="true"))) == [["body", "fit", "shuffle"]]
    nothing_stored(client)


def test_every_answer_is_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            answers = set(operation["responses"])
            if path != "/health":
                assert "401" in answers, (method, path)
            if "{" in path:
                assert "404" in answers, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= answers, (method, path)
    assert "503" in paths["/health"]["get"]["responses"]


# --- malformed requests, by hand -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        pytest.param(b"{not json", JSON, 422, id="invalid JSON"),
        pytest.param(b'{"epochs": 3', JSON, 422, id="truncated JSON"),
        pytest.param(b"[1, 2]", JSON, 422, id="an array"),
        pytest.param(b"42", JSON, 422, id="a number"),
        pytest.param(b'"fit"', JSON, 422, id="a string"),
        pytest.param(b"null", JSON, 422, id="null"),
        pytest.param(b"", JSON, 422, id="empty"),
        pytest.param(b"", {}, 422, id="empty, no content-type"),
        pytest.param(b'{"epochs": 3}', {"content-type": "text/plain"}, 422, id="text/plain"),
        pytest.param(
            b"epochs=3", {"content-type": "application/x-www-form-urlencoded"}, 422, id="a form"
        ),
        pytest.param(b'{"name": "\xff\xfe"}', JSON, 400, id="not UTF-8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, JSON, 400, id="nested 100,000 deep"),
        pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, JSON, 400, id="objects nested deep"),
        pytest.param(b'{"epochs": ' + b"9" * 5000 + b"}", JSON, 400, id="a 5000-digit number"),
    ],
)
def test_a_malformed_body_is_refused(
    client: TestClient, body: bytes, headers: dict[str, str], status: int
) -> None:
    detail = refused(client.post("/jobs", content=body, headers=headers), status)["detail"]
    assert detail
    nothing_stored(client)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"optimizer": {"type": "sgd", "lr": NaN}}', "lr"),
        (b'{"optimizer": {"type": "sgd", "lr": Infinity}}', "lr"),
        (b'{"optimizer": {"type": "sgd", "lr": -Infinity}}', "lr"),
        (b'{"optimizer": {"type": "sgd", "lr": 1e999}}', "lr"),
        (b'{"data": {"type": "inline", "x": [[NaN]], "y": [1]}}', "float"),
        (
            b'{"task": "minimize", "objective": {"type": "quadratic"}, "x0": [Infinity],'
            b' "optimizer": {"type": "sgd"}, "steps": 1}',
            0,
        ),
    ],
)
def test_nan_and_infinity_are_422_in_valid_json(
    client: TestClient, body: bytes, field: Any
) -> None:
    response = client.post("/jobs", content=body, headers=JSON)
    assert field in [loc[-1] for loc in locs(response)]
    assert b"NaN" not in response.content and b"Infinity" not in response.content
    nothing_stored(client)


def test_an_epoch_count_of_10_to_the_30_is_422(client: TestClient) -> None:
    response = client.post("/jobs", content=b'{"epochs": 1' + b"0" * 30 + b"}", headers=JSON)
    assert locs(response) == [["body", "fit", "epochs"]]


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("/jobs", {"limit": "abc"}, ["query", "limit"]),
        ("/jobs", {"limit": "0"}, ["query", "limit"]),
        ("/jobs", {"limit": "1e3"}, ["query", "limit"]),
        ("/jobs", {"status": "sleeping"}, ["query", "status"]),
        ("/datasets", {"limit": "abc"}, ["query", "limit"]),
        ("/datasets", {"limit": "501"}, ["query", "limit"]),
    ],
)
def test_a_list_parameter_of_the_wrong_type_is_422(
    client: TestClient, path: str, params: dict[str, str], loc: list[Any]
) -> None:
    assert locs(client.get(path, params=params)) == [loc]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"after": "1e999"}, ["query", "after"]),
        ({"after": "abc"}, ["query", "after"]),
        ({"after": "1.5"}, ["query", "after"]),
        ({"points": "-1"}, ["query", "points"]),
        ({"points": "1"}, ["query", "points"]),
        ({"points": "NaN"}, ["query", "points"]),
    ],
)
def test_a_curve_parameter_of_the_wrong_type_is_422(
    client: TestClient, params: dict[str, str], loc: list[Any]
) -> None:
    job = client.post("/jobs", json=fit_spec()).json()
    assert locs(client.get(f"/jobs/{job['id']}/curves", params=params)) == [loc]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"a,b\n1,2\n", "multipart/form-data", 400),  # no boundary
        (b"not multipart", "multipart/form-data; boundary=zz", 400),
        (b'{"file": "a,b"}', "application/json", 422),
        (b"", "multipart/form-data; boundary=zz", 422),
    ],
)
def test_a_malformed_upload_is_refused(
    client: TestClient, content: bytes, content_type: str, status: int
) -> None:
    response = client.post("/datasets", content=content, headers={"content-type": content_type})
    assert refused(response, status)["detail"]
    assert client.get("/datasets").json()["items"] == []
