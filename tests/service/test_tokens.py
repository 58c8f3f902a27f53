"""Access with DESCENT_API_TOKENS set (API.md section 8): no stranger gets in, and a token sees
only the jobs and datasets it made."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from tests.conftest import fit_spec

ALPHA = {"Authorization": "Bearer alpha"}
BETA = {"Authorization": "Bearer beta"}
CSV = b"a,b,y\n1,2.5,0\n-3,4e-3,1\n0.1,6,2\n"

#: every endpoint but /health, with the body it needs to get past validation; `{id}` is a job's,
#: a dataset's or a sweep's id
ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/jobs", {"json": fit_spec()}),
    ("GET", "/jobs", {}),
    ("GET", "/jobs/{id}", {}),
    ("POST", "/jobs/{id}/cancel", {}),
    ("DELETE", "/jobs/{id}", {}),
    ("GET", "/jobs/{id}/curves", {}),
    ("GET", "/jobs/{id}/parameters", {}),
    ("GET", "/jobs/{id}/trajectory", {}),
    ("GET", "/jobs/{id}/events", {}),
    ("GET", "/jobs/{id}/plot.png", {}),
    ("POST", "/datasets", {"files": {"file": ("d.csv", CSV, "text/csv")}}),
    ("GET", "/datasets", {}),
    ("GET", "/datasets/{id}", {}),
    ("DELETE", "/datasets/{id}", {}),
    ("POST", "/sweeps", {"json": {"base": fit_spec(), "grid": {"seed": [0, 1]}}}),
    ("GET", "/sweeps", {}),
    ("GET", "/sweeps/{id}", {}),
    ("POST", "/sweeps/{id}/cancel", {}),
    ("DELETE", "/sweeps/{id}", {}),
    ("GET", "/sweeps/{id}/curves", {}),
    ("GET", "/sweeps/{id}/plot.png", {}),
]
JOB_READS = ["", "/curves", "/parameters", "/trajectory", "/events", "/plot.png"]


@pytest.fixture
def guarded(db_url: str) -> Iterator[TestClient]:
    """A client of a service that knows the tokens `alpha` and `beta`."""
    settings = Settings(database_url=db_url, api_tokens="alpha,beta")
    with TestClient(create_app(settings)) as client:
        yield client


def submit(client: TestClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post("/jobs", json=fit_spec(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def sweep(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    body = {"base": fit_spec(), "grid": {"seed": [0, 1]}}
    response = client.post("/sweeps", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def upload(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    files = {"file": ("d.csv", CSV, "text/csv")}
    response = client.post("/datasets", files=files, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# --- strangers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer gamma",
        "Bearer alph",
        "Bearer alphaalpha",
        "Bearer alpha,beta",
        "Basic xyz",
        "Basic YWxwaGE6",
        "Bearer",
        "Bearer ",
        "alpha",
        "",
    ],
)
def test_no_valid_token_is_401(guarded: TestClient, authorization: str | None) -> None:
    # real ids, so a 401 cannot be mistaken for a 404
    job_id = submit(guarded, ALPHA)["id"]
    dataset_id = upload(guarded, ALPHA)["id"]
    sweep_id = sweep(guarded, ALPHA)["id"]
    ids = {"/jobs": job_id, "/datasets": dataset_id, "/sweeps": sweep_id}
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in ENDPOINTS:
        url = path.format(id=ids["/" + path.split("/")[1]])
        response = guarded.request(method, url, headers=headers, **body)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/json"
        assert "Bearer" in response.json()["detail"]
    # and nothing was done: alpha's job and dataset are still there, and no new ones
    assert guarded.get(f"/jobs/{job_id}", headers=ALPHA).json()["status"] == "queued"
    assert len(guarded.get("/jobs", headers=ALPHA).json()["items"]) == 3  # the sweep's two
    assert len(guarded.get("/datasets", headers=ALPHA).json()["items"]) == 1
    assert len(guarded.get("/sweeps", headers=ALPHA).json()["items"]) == 1
    assert guarded.get(f"/sweeps/{sweep_id}", headers=ALPHA).json()["counts"]["queued"] == 2


def test_every_documented_endpoint_needs_a_token(guarded: TestClient) -> None:
    # routes added later are held to it too
    ids = {
        "job_id": submit(guarded, ALPHA)["id"],
        "dataset_id": upload(guarded, ALPHA)["id"],
        "sweep_id": sweep(guarded, ALPHA)["id"],
    }
    paths = guarded.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method in operations:
            response = guarded.request(method, path.format(**ids))
            expected = 200 if path == "/health" else 401
            assert response.status_code == expected, (method, path, response.text)


def test_invalid_body_without_a_token_is_401_not_422(guarded: TestClient) -> None:
    # a stranger learns nothing of the spec's rules
    assert guarded.post("/jobs", json={"epochs": "many"}).status_code == 401
    assert guarded.post("/jobs", content=b"{not json").status_code == 401
    assert guarded.get("/jobs", params={"limit": "abc"}).status_code == 401


def test_health_is_open(guarded: TestClient) -> None:
    assert guarded.get("/health").json()["status"] == "ok"
    assert guarded.get("/health", headers={"Authorization": "Bearer gamma"}).status_code == 200


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/health", "application/json"),
        ("/openapi.json", "application/json"),
        ("/docs", "text/html"),
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/favicon.svg", "image/svg+xml"),
    ],
)
def test_what_holds_no_data_is_open(guarded: TestClient, path: str, content_type: str) -> None:
    for headers in ({}, {"Authorization": "Bearer gamma"}):
        response = guarded.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text[:200])
        assert response.headers["content-type"].startswith(content_type)


def test_metrics_are_not_open(guarded: TestClient) -> None:
    response = guarded.get("/metrics")
    assert response.status_code == 401 and "Bearer" in response.json()["detail"]
    assert guarded.get("/metrics", headers=ALPHA).status_code == 200


def test_either_token_gets_in(guarded: TestClient) -> None:
    assert guarded.get("/jobs", headers=ALPHA).status_code == 200
    assert guarded.get("/jobs", headers=BETA).status_code == 200
    # the scheme's name is case-insensitive, as RFC 7235 has it
    assert guarded.get("/jobs", headers={"Authorization": "bearer beta"}).status_code == 200


# --- owners ------------------------------------------------------------------------------


def test_another_token_cannot_see_or_touch_a_job(guarded: TestClient) -> None:
    job = submit(guarded, ALPHA, name="alpha's")
    url = f"/jobs/{job['id']}"
    for suffix in JOB_READS:
        response = guarded.get(url + suffix, headers=BETA)
        assert response.status_code == 404, suffix
        assert response.json() == {"detail": f"no job {job['id']!r}"}
    assert guarded.post(f"{url}/cancel", headers=BETA).status_code == 404
    assert guarded.delete(url, headers=BETA).status_code == 404
    assert guarded.get("/jobs", headers=BETA).json() == {"items": [], "next_cursor": None}
    for status in ("queued", "cancelled"):
        listed = guarded.get("/jobs", params={"status": status}, headers=BETA).json()
        assert listed["items"] == []
    # beta's attempts changed nothing
    assert guarded.get(url, headers=ALPHA).json()["status"] == "queued"


def test_a_token_sees_all_of_its_own(guarded: TestClient) -> None:
    mine = [submit(guarded, ALPHA, name=f"a{i}")["id"] for i in range(3)]
    theirs = submit(guarded, BETA, name="b")["id"]
    page = guarded.get("/jobs", params={"limit": 2}, headers=ALPHA).json()
    rest = guarded.get(
        "/jobs", params={"limit": 2, "cursor": page["next_cursor"]}, headers=ALPHA
    ).json()
    assert [j["id"] for j in page["items"] + rest["items"]] == mine[::-1]
    assert [j["id"] for j in guarded.get("/jobs", headers=BETA).json()["items"]] == [theirs]
    url = f"/jobs/{mine[0]}"
    for suffix in JOB_READS:
        if suffix != "/events":  # a queued job's stream does not end
            assert guarded.get(url + suffix, headers=ALPHA).status_code == 200, suffix
    assert guarded.post(f"{url}/cancel", headers=ALPHA).json()["status"] == "cancelled"
    assert guarded.delete(url, headers=ALPHA).status_code == 204
    assert guarded.get(url, headers=ALPHA).status_code == 404
    assert guarded.get(f"/jobs/{theirs}", headers=BETA).status_code == 200


def test_another_token_cannot_see_or_touch_a_dataset(guarded: TestClient) -> None:
    dataset = upload(guarded, ALPHA)
    url = f"/datasets/{dataset['id']}"
    assert guarded.get(url, headers=BETA).status_code == 404
    assert guarded.delete(url, headers=BETA).status_code == 404
    assert guarded.get("/datasets", headers=BETA).json() == {"items": [], "next_cursor": None}
    assert guarded.get(url, headers=ALPHA).json() == dataset
    assert [d["id"] for d in guarded.get("/datasets", headers=ALPHA).json()["items"]] == [
        dataset["id"]
    ]
    assert guarded.delete(url, headers=ALPHA).status_code == 204
    assert guarded.get(url, headers=ALPHA).status_code == 404


def test_another_token_cannot_train_on_a_dataset(guarded: TestClient) -> None:
    dataset = upload(guarded, ALPHA)
    data = {"type": "dataset", "id": dataset["id"]}
    spec = fit_spec(model={"type": "softmax"}, data=data, batch_size=None, epochs=1)
    refused = guarded.post("/jobs", json=spec, headers=BETA)
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["detail"]
    assert f"there is no dataset {dataset['id']!r}" in error["msg"]
    assert error["loc"][:3] == ["body", "fit", "data"]
    assert guarded.get("/jobs", headers=BETA).json()["items"] == []
    assert guarded.post("/jobs", json=spec, headers=ALPHA).status_code == 201


# --- an open service ---------------------------------------------------------------------


def test_unset_tokens_mean_an_open_service(client: TestClient) -> None:
    job = client.post("/jobs", json=fit_spec()).json()
    dataset = client.post("/datasets", files={"file": ("d.csv", CSV, "text/csv")}).json()
    # any header, or none, reads the same things
    for headers in ({}, ALPHA, {"Authorization": "Basic xyz"}):
        assert client.get(f"/jobs/{job['id']}", headers=headers).status_code == 200
        assert [j["id"] for j in client.get("/jobs", headers=headers).json()["items"]] == [
            job["id"]
        ]
        assert client.get(f"/datasets/{dataset['id']}", headers=headers).status_code == 200
