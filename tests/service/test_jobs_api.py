"""The jobs endpoints (API.md sections 2 and 4) over a fresh SQLite file, a worker in-process."""

from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from tests.conftest import fit_spec
from worker.claims import Worker


@pytest.fixture
def worker(settings: Settings) -> Worker:
    return Worker(settings, device="cpu")


def test_submit_then_run_then_read(client: TestClient, worker: Worker) -> None:
    job = client.post("/jobs", json=fit_spec(name="first")).json()
    assert job["status"] == "queued" and job["name"] == "first"
    assert job["started_at"] is None and job["result"] is None and job["error"] is None
    assert worker.run_one()
    done = client.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "succeeded"
    assert done["progress"] == {"step": 12, "total_steps": 12, "epoch": 3, "total_epochs": 3}
    result = done["result"]
    assert result["steps"] == 12 and result["device"] == "cpu" and result["duration_s"] > 0
    assert result["best_loss"] <= result["final_loss"]
    assert set(result["metrics"]) == {"train_loss", "val_loss"}
    assert done["started_at"] <= done["finished_at"]
    assert not worker.run_one()  # nothing left


def test_classifier_result_has_accuracies(client: TestClient, worker: Worker) -> None:
    spec = fit_spec(
        model={"type": "softmax"},
        data={"type": "classification", "kind": "blobs", "n_classes": 3},
        optimizer={"type": "adam", "lr": 0.05},
    )
    job = client.post("/jobs", json=spec).json()
    worker.run_one()
    metrics = client.get(f"/jobs/{job['id']}").json()["result"]["metrics"]
    assert set(metrics) == {"train_loss", "val_loss", "accuracy", "val_accuracy"}
    assert 0 <= metrics["accuracy"] <= 1


def test_curves_names_after_points(client: TestClient, worker: Worker) -> None:
    job = client.post("/jobs", json=fit_spec(batch_size=1, epochs=2)).json()
    worker.run_one()
    url = f"/jobs/{job['id']}/curves"
    full = client.get(url).json()
    assert full["status"] == "succeeded"
    assert set(full["series"]) == {"loss", "train_loss", "val_loss", "lr"}
    loss = full["series"]["loss"]
    n_train = 64 - math.floor(64 * 0.2)
    assert loss["steps"] == list(range(1, 2 * n_train + 1))
    assert full["series"]["val_loss"]["steps"] == [n_train, 2 * n_train]

    only = client.get(url, params={"names": "val_loss,lr"}).json()["series"]
    assert set(only) == {"val_loss", "lr"}

    tail = client.get(url, params={"names": "loss", "after": 100}).json()["series"]["loss"]
    assert tail["steps"] == list(range(101, 2 * n_train + 1))
    assert tail["values"] == loss["values"][100:]

    thin = client.get(url, params={"names": "loss", "points": 10}).json()["series"]["loss"]
    assert len(thin["steps"]) <= 10
    assert thin["steps"][0] == 1 and thin["steps"][-1] == 2 * n_train
    assert max(loss["values"]) in thin["values"] and min(loss["values"]) in thin["values"]


def test_parameters_use_state_dict_names(client: TestClient, worker: Worker) -> None:
    spec = fit_spec(
        model={"type": "mlp", "hidden": [4, 3], "activation": "tanh"},
        data={"type": "linear", "n_samples": 32, "n_features": 2},
    )
    job = client.post("/jobs", json=spec).json()
    assert client.get(f"/jobs/{job['id']}/parameters").json()["parameters"] == {}
    worker.run_one()
    body = client.get(f"/jobs/{job['id']}/parameters").json()
    assert body["job_id"] == job["id"] and body["step"] == 6
    shapes = {
        k: (len(v), len(v[0]) if isinstance(v[0], list) else None)
        for k, v in body["parameters"].items()
    }
    assert shapes == {
        "layers.0.weight": (4, 2),
        "layers.0.bias": (4, None),
        "layers.1.weight": (3, 4),
        "layers.1.bias": (3, None),
        "layers.2.weight": (1, 3),
        "layers.2.bias": (1, None),
    }


def test_divergence_fails_with_the_step_and_valid_json(client: TestClient, worker: Worker) -> None:
    spec = fit_spec(optimizer={"type": "sgd", "lr": 10.0}, batch_size=None, epochs=200)
    job = client.post("/jobs", json=spec).json()
    worker.run_one()
    done = client.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "failed" and done["error"]["type"] == "diverged"
    curve = client.get(f"/jobs/{job['id']}/curves", params={"names": "loss"})
    json.loads(curve.text, parse_constant=lambda token: pytest.fail(f"bare {token} in body"))
    steps = curve.json()["series"]["loss"]["steps"]
    assert f"at step {steps[-1] + 1}" in done["error"]["message"]
    assert all(math.isfinite(v) for v in curve.json()["series"]["loss"]["values"])
    assert steps == list(range(1, len(steps) + 1))


def test_list_newest_first_with_cursor_and_status(client: TestClient, worker: Worker) -> None:
    ids = [client.post("/jobs", json=fit_spec(name=f"j{i}")).json()["id"] for i in range(5)]
    worker.run_one()  # the oldest runs
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    queued = client.get("/jobs", params={"status": "queued"}).json()["items"]
    assert [j["id"] for j in queued] == ids[:0:-1]
    succeeded = client.get("/jobs", params={"status": "succeeded"}).json()["items"]
    assert [j["id"] for j in succeeded] == ids[:1]
    assert client.get("/jobs", params={"status": "sleeping"}).status_code == 422
    assert client.get("/jobs", params={"cursor": "nonsense"}).status_code == 422
    assert client.get("/jobs", params={"limit": 0}).status_code == 422


def test_cancel_queued_then_finished_is_409(client: TestClient, worker: Worker) -> None:
    job = client.post("/jobs", json=fit_spec()).json()
    cancelled = client.post(f"/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["error"]["type"] == "cancelled"
    assert cancelled["finished_at"] is not None
    assert not worker.run_one()  # a cancelled job is never claimed
    again = client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and "already finished" in again.json()["detail"]


def test_delete_removes_job_and_data(client: TestClient, worker: Worker) -> None:
    job = client.post("/jobs", json=fit_spec()).json()
    worker.run_one()
    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    for path in ("", "/curves", "/parameters"):
        assert client.get(f"/jobs/{job['id']}{path}").status_code == 404
    assert client.delete(f"/jobs/{job['id']}").status_code == 404


@pytest.mark.parametrize("path", ["", "/curves", "/parameters"])
def test_unknown_job_is_404(client: TestClient, path: str) -> None:
    response = client.get(f"/jobs/nope{path}")
    assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert client.post("/jobs/nope/cancel").status_code == 404


def test_gpu_job_on_cpu_worker_fails_invalid(client: TestClient, settings: Settings) -> None:
    job = client.post("/jobs", json=fit_spec(device="cuda:0")).json()
    # a CPU-only worker leaves GPU jobs to GPU workers for a while, then fails them
    worker = Worker(settings, device="cpu")
    assert not worker.run_one()
    from service.store import job_queue as job_store

    old, job_store.GPU_WAIT_SECONDS = job_store.GPU_WAIT_SECONDS, -1.0
    try:
        assert worker.run_one()
    finally:
        job_store.GPU_WAIT_SECONDS = old
    done = client.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "failed" and done["error"]["type"] == "invalid"
    assert "cuda:0" in done["error"]["message"]


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "database": "sqlite", "workers": 0}
