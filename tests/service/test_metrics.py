"""GET /metrics: the Prometheus text format, job counts read from the database, latencies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import Engine, update

from service.config import Settings
from service.db.tables import JobRow
from service.main import create_app
from tests.conftest import fit_spec
from worker.claims import Worker

STATUSES = {"queued", "running", "succeeded", "failed", "cancelled"}


def scrape(client: TestClient) -> list[Sample]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    (found,) = [s.value for s in samples if s.name == name and s.labels == labels]
    return found


def jobs_by_status(samples: list[Sample]) -> dict[str, float]:
    return {s.labels["status"]: s.value for s in samples if s.name == "descent_jobs"}


def test_an_empty_service_has_every_status_at_zero(client: TestClient) -> None:
    samples = scrape(client)
    assert jobs_by_status(samples) == dict.fromkeys(STATUSES, 0.0)
    assert value(samples, "descent_queue_depth") == 0
    assert value(samples, "descent_steps_recorded") == 0


def test_counts_follow_the_jobs(client: TestClient, settings: Settings) -> None:
    ids = [client.post("/jobs", json=fit_spec()).json()["id"] for _ in range(3)]
    client.post(f"/jobs/{ids[2]}/cancel")
    samples = scrape(client)
    assert jobs_by_status(samples) == {**dict.fromkeys(STATUSES, 0.0), "queued": 2, "cancelled": 1}
    assert value(samples, "descent_queue_depth") == 2

    assert Worker(settings, device="cpu").run_one()  # the oldest: 3 epochs of 4 batches
    samples = scrape(client)
    assert jobs_by_status(samples)["succeeded"] == 1
    assert value(samples, "descent_queue_depth") == 1
    assert value(samples, "descent_steps_recorded") == 12
    client.delete(f"/jobs/{ids[0]}")
    assert value(scrape(client), "descent_steps_recorded") == 0  # a gauge: deleted jobs drop out


def test_requests_are_timed_by_route_template(client: TestClient) -> None:
    job = client.post("/jobs", json=fit_spec()).json()
    client.get(f"/jobs/{job['id']}")
    client.get("/jobs/nosuchjob")
    client.get("/no/such/path")
    samples = scrape(client)

    def count(route: str, status: str, method: str = "GET") -> float:
        name = "descent_http_request_duration_seconds_count"
        return value(samples, name, method=method, route=route, status=status)

    assert count("/jobs/{job_id}", "200") == 1
    assert count("/jobs/{job_id}", "404") == 1
    assert count("/jobs", "201", method="POST") == 1
    assert count("unmatched", "404") == 1
    assert not any(job["id"] in str(s.labels) for s in samples)  # never a raw URL


ALPHA = {"Authorization": "Bearer alpha"}
BETA = {"Authorization": "Bearer beta"}
SCRAPER = {"Authorization": "Bearer scraper"}


@pytest.fixture
def guarded(db_url: str) -> Iterator[TestClient]:
    """Tokens `alpha` and `beta` for the API, and `scraper` for /metrics alone."""
    settings = Settings(database_url=db_url, api_tokens="alpha,beta", metrics_token="scraper")
    with TestClient(create_app(settings)) as client:
        yield client


def scrape_as(client: TestClient, headers: dict[str, str]) -> list[Sample]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def submit(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post("/jobs", json=fit_spec(), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer gamma", "Bearer scraperx", "Basic c2NyYXBlcg==", "scraper"]
)
def test_metrics_need_a_token_when_tokens_are_set(
    guarded: TestClient, authorization: str | None
) -> None:
    submit(guarded, ALPHA)
    headers = {} if authorization is None else {"Authorization": authorization}
    response = guarded.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/json"
    assert "Bearer" in response.json()["detail"]
    assert "descent_jobs" not in response.text


def test_each_token_sees_its_own_jobs_and_the_scraper_all(
    guarded: TestClient, engine: Engine
) -> None:
    alphas = [submit(guarded, ALPHA) for _ in range(3)]
    beta = submit(guarded, BETA)
    guarded.post(f"/jobs/{alphas[0]}/cancel", headers=ALPHA)
    with engine.begin() as conn:  # as a worker would have recorded them
        conn.execute(update(JobRow).where(JobRow.id == alphas[1]).values(step=7))
        conn.execute(update(JobRow).where(JobRow.id == beta).values(step=5))

    seen = {name: scrape_as(guarded, h) for name, h in [("a", ALPHA), ("b", BETA), ("s", SCRAPER)]}
    assert jobs_by_status(seen["a"]) == {
        **dict.fromkeys(STATUSES, 0.0),
        "queued": 2,
        "cancelled": 1,
    }
    assert jobs_by_status(seen["b"]) == {**dict.fromkeys(STATUSES, 0.0), "queued": 1}
    assert jobs_by_status(seen["s"]) == {
        **dict.fromkeys(STATUSES, 0.0),
        "queued": 3,
        "cancelled": 1,
    }
    assert [value(seen[n], "descent_queue_depth") for n in "abs"] == [2, 1, 3]
    assert [value(seen[n], "descent_steps_recorded") for n in "abs"] == [7, 5, 12]
    # the request latencies are aggregate, by route template: everyone sees the same ones
    name = "descent_http_request_duration_seconds_count"
    assert value(seen["b"], name, method="POST", route="/jobs", status="201") == 4


def test_the_metrics_token_opens_nothing_else(guarded: TestClient) -> None:
    assert guarded.get("/jobs", headers=SCRAPER).status_code == 401
    assert guarded.post("/jobs", json=fit_spec(), headers=SCRAPER).status_code == 401


def test_without_a_metrics_token_only_the_api_tokens_scrape(db_url: str) -> None:
    settings = Settings(database_url=db_url, api_tokens="alpha")
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
        assert client.get("/metrics", headers=ALPHA).status_code == 200


def test_an_open_service_has_open_metrics(db_url: str) -> None:
    # a metrics token alone guards nothing: without API tokens every endpoint is open
    settings = Settings(database_url=db_url, metrics_token="scraper")
    with TestClient(create_app(settings)) as client:
        submit(client, {})
        assert jobs_by_status(scrape_as(client, {}))["queued"] == 1
        assert jobs_by_status(scrape_as(client, ALPHA))["queued"] == 1


def test_apps_keep_their_own_registries(settings: Settings) -> None:
    # two apps in one process, as in the tests: neither's histogram sees the other's requests
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        one.get("/health")
        name = "descent_http_request_duration_seconds_count"
        assert value(scrape(one), name, method="GET", route="/health", status="200") == 1
        assert not [s for s in scrape(two) if s.name == name and s.labels["route"] == "/health"]
