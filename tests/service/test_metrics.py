"""GET /metrics: the Prometheus text format, job counts read from the database, latencies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.config import Settings, configure
from service.main import create_app
from tests.conftest import fit_spec
from worker.main import Worker

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


@pytest.fixture
def guarded(db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, api_tokens="alpha")
    configure(settings)
    with TestClient(create_app(settings)) as client:
        yield client
    configure(Settings())


def test_metrics_stay_open_with_tokens(guarded: TestClient) -> None:
    assert guarded.get("/jobs").status_code == 401
    guarded.post("/jobs", json=fit_spec(), headers={"Authorization": "Bearer alpha"})
    assert jobs_by_status(scrape(guarded))["queued"] == 1


def test_apps_keep_their_own_registries(settings: Settings) -> None:
    # two apps in one process, as in the tests: neither's histogram sees the other's requests
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        one.get("/health")
        name = "descent_http_request_duration_seconds_count"
        assert value(scrape(one), name, method="GET", route="/health", status="200") == 1
        assert not [s for s in scrape(two) if s.name == name and s.labels["route"] == "/health"]
