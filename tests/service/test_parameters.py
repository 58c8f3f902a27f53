"""A job's parameters: stored as a safetensors file, served as JSON up to
DESCENT_MAX_PARAMETERS_JSON scalars and as the file (`?format=safetensors`) at any size."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import safetensors.torch
import sqlalchemy as sa
import torch
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from service.client import Client, ClientError
from service.config import Settings
from service.db.engine import make_engine, reading, writing
from service.db.migrate import alembic_config, migrate
from service.db.tables import JobRow
from service.main import create_app
from service.store import curves, job_queue
from tests.conftest import both_backends, fit_spec
from worker.claims import Worker
from worker.database_recorder import DatabaseRecorder
from worker.training.parameters_file import encode_parameters
from worker.training.recorder import Chunk

MLP = fit_spec(
    model={"type": "mlp", "hidden": [4, 3], "activation": "tanh"},
    data={"type": "linear", "n_samples": 32, "n_features": 2},
)
#: its tensors, in state_dict order, and how many scalars they hold
MLP_NAMES = [f"layers.{k}.{p}" for k in range(3) for p in ("weight", "bias")]
MLP_SCALARS = 4 * 2 + 4 + 3 * 4 + 3 + 1 * 3 + 1


@pytest.fixture
def worker(settings: Settings) -> Worker:
    return Worker(settings, device="cpu")


def _download(client: TestClient, job_id: str) -> tuple[dict[str, torch.Tensor], int]:
    """The safetensors answer read back by safetensors itself, and its step."""
    answer = client.get(f"/jobs/{job_id}/parameters", params={"format": "safetensors"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    disposition = f'attachment; filename="{job_id}.safetensors"'
    assert answer.headers["content-disposition"] == disposition
    tensors = safetensors.torch.load(answer.content)
    assert int(answer.headers["x-descent-parameters"]) == sum(t.numel() for t in tensors.values())
    return tensors, int(answer.headers["x-descent-step"])


def _assert_json_is_the_file(client: TestClient, job_id: str) -> dict[str, Any]:
    body = client.get(f"/jobs/{job_id}/parameters").json()
    tensors, step = _download(client, job_id)
    assert body["step"] == step
    assert sorted(body["parameters"]) == sorted(tensors)
    for name, tensor in tensors.items():
        assert body["parameters"][name] == tensor.tolist(), name  # exactly, value for value
    return body  # type: ignore[no-any-return]


@both_backends
def test_json_and_the_safetensors_file_hold_the_same_values(
    client: TestClient, worker: Worker
) -> None:
    job = client.post("/jobs", json=MLP).json()
    assert worker.run_one()
    body = _assert_json_is_the_file(client, job["id"])
    assert body["job_id"] == job["id"] and body["step"] == 6
    assert list(body["parameters"]) == MLP_NAMES  # state_dict order
    assert body["parameters"]["layers.0.weight"][0][0] != 0.0


def test_a_float64_model_and_a_minimize_job_round_trip(client: TestClient, worker: Worker) -> None:
    fit = client.post("/jobs", json={**MLP, "dtype": "float64"}).json()
    minimize = client.post(
        "/jobs",
        json={
            "task": "minimize",
            "objective": {"type": "rosenbrock"},
            "x0": [-1.2, 1.0],
            "optimizer": {"type": "sgd", "lr": 0.001},
            "steps": 7,
        },
    ).json()
    assert worker.run_one() and worker.run_one()
    tensors, _ = _download(client, fit["id"])
    assert {t.dtype for t in tensors.values()} == {torch.float64}
    _assert_json_is_the_file(client, fit["id"])
    body = _assert_json_is_the_file(client, minimize["id"])
    assert list(body["parameters"]) == ["x"] and len(body["parameters"]["x"]) == 2
    assert body["step"] == 7


def test_each_run_of_a_grouped_sweep_stores_its_own_parameters(
    client: TestClient, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    sweep = client.post("/sweeps", json={"base": MLP, "grid": {"seed": [0, 1]}}).json()
    with caplog.at_level(logging.INFO, logger="worker.claims"):
        assert worker.run_one()
    assert "training 2 runs of a sweep together" in caplog.text  # as stacked rows
    first, second = (
        _assert_json_is_the_file(client, run["id"])["parameters"] for run in sweep["jobs"]
    )
    assert list(first) == MLP_NAMES and first != second


def test_none_saved_yet_is_step_0_and_no_tensors_in_either_form(client: TestClient) -> None:
    job = client.post("/jobs", json=MLP).json()
    assert client.get(f"/jobs/{job['id']}/parameters").json() == {
        "job_id": job["id"],
        "step": 0,
        "parameters": {},
    }
    assert _download(client, job["id"]) == ({}, 0)


def test_an_unknown_format_is_a_422_naming_it(client: TestClient) -> None:
    job = client.post("/jobs", json=MLP).json()
    answer = client.get(f"/jobs/{job['id']}/parameters", params={"format": "pickle"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "format"]


def test_a_missing_job_is_a_404_in_either_form(client: TestClient) -> None:
    for params in ({}, {"format": "safetensors"}):
        assert client.get("/jobs/nope/parameters", params=params).status_code == 404


# --- past the JSON limit -----------------------------------------------------------------


@pytest.fixture
def small_json(db_url: str) -> Iterator[Settings]:
    """Settings that serve at most 10 scalars as JSON."""
    settings = Settings(database_url=db_url, max_parameters_json=10)
    yield settings


@both_backends
def test_past_the_json_limit_a_413_points_to_the_download(
    small_json: Settings, tmp_path: Path
) -> None:
    small = fit_spec(data={"type": "linear", "n_samples": 32, "n_features": 2})  # 3 scalars
    with TestClient(create_app(small_json)) as client:
        big, fits = (client.post("/jobs", json=s).json()["id"] for s in (MLP, small))
        worker = Worker(small_json, device="cpu")
        assert worker.run_one() and worker.run_one()
        answer = client.get(f"/jobs/{big}/parameters")
        assert answer.status_code == 413
        detail = answer.json()["detail"]
        assert f"has {MLP_SCALARS} parameters" in detail and "the 10 served as JSON" in detail
        assert "DESCENT_MAX_PARAMETERS_JSON" in detail
        assert f"/jobs/{big}/parameters?format=safetensors" in detail
        tensors, step = _download(client, big)
        assert sorted(tensors) == sorted(MLP_NAMES) and step == 6
        assert client.get(f"/jobs/{fits}/parameters").status_code == 200

        # the Python client: the JSON form raises, the download writes the same file
        api = _client_over(client)
        with pytest.raises(ClientError) as raised:
            api.parameters(big)
        assert raised.value.status == 413 and "format=safetensors" in str(raised.value)
        path = tmp_path / "big.safetensors"
        assert api.download_parameters(big, path) == 6
        loaded = safetensors.torch.load_file(path)
        assert all(torch.equal(loaded[name], tensors[name]) for name in MLP_NAMES)
        assert not (tmp_path / "big.safetensors.part").exists()
        with pytest.raises(ClientError) as raised:
            api.download_parameters("nope", tmp_path / "nope.safetensors")
        assert raised.value.status == 404 and not (tmp_path / "nope.safetensors").exists()


def _client_over(test_client: TestClient) -> Client:
    """The Python client, talking to the app in-process."""
    api = Client(str(test_client.base_url))
    api.http.close()
    api.http = test_client
    return api


def test_a_model_of_millions_of_parameters_is_stored_and_served(
    client: TestClient, worker: Worker
) -> None:
    spec = fit_spec(
        model={"type": "mlp", "hidden": [1500, 1500]},
        data={"type": "linear", "n_samples": 20, "n_features": 500},
        batch_size=None,
        epochs=1,
    )
    job = client.post("/jobs", json=spec).json()
    started = time.monotonic()
    assert worker.run_one()
    assert client.get(f"/jobs/{job['id']}").json()["status"] == "succeeded"
    scalars = (500 + 1) * 1500 + (1500 + 1) * 1500 + 1500 + 1
    answer = client.get(f"/jobs/{job['id']}/parameters")
    assert answer.status_code == 413 and f"has {scalars} parameters" in answer.json()["detail"]
    tensors, step = _download(client, job["id"])
    assert sum(t.numel() for t in tensors.values()) == scalars
    assert step == 1 and tensors["layers.1.weight"].shape == (1500, 1500)
    assert time.monotonic() - started < 10


# --- the store ---------------------------------------------------------------------------


def _held_job(engine: Engine, worker_id: str = "w") -> int:
    job_queue.create(engine, spec={"device": "cpu"}, owner=None, total_steps=3, total_epochs=1)
    claimed = job_queue.claim_next(engine, worker_id=worker_id, lease_seconds=30, has_gpu=False)
    assert claimed is not None
    return claimed.pk


@both_backends
def test_values_that_are_not_finite_are_served_as_null(client: TestClient, engine: Engine) -> None:
    job_pk = _held_job(engine)
    weight = torch.tensor([[1.5, math.nan], [math.inf, -math.inf]])
    chunk = Chunk(step=3, epoch=1, parameters=encode_parameters({"weight": weight}))
    assert curves.record(
        engine, job_pk=job_pk, worker_id="w", chunk=chunk, tails={}, parameters=chunk.parameters
    )
    with reading(engine) as conn:
        job_id = conn.execute(select(JobRow.id).where(JobRow.pk == job_pk)).scalar_one()
    answer = client.get(f"/jobs/{job_id}/parameters")
    assert b'"weight":[[1.5,null],[null,null]]' in answer.content
    assert orjson.loads(answer.content)["step"] == 3
    tensors, _ = _download(client, job_id)
    assert torch.equal(tensors["weight"].nan_to_num(0.0), weight.nan_to_num(0.0))


def test_parameters_queued_behind_newer_ones_are_not_written(engine: Engine) -> None:
    job_pk = _held_job(engine)
    recorder = DatabaseRecorder(
        engine,
        job_pk=job_pk,
        worker_id="w",
        lease_seconds=30,
        heartbeat_seconds=10,
        shutdown=threading.Event(),
    )
    files = [encode_parameters({"w": torch.full((2,), float(step))}) for step in (1, 2, 3)]
    chunks = [Chunk(step=s, epoch=0, parameters=f) for s, f in zip((1, 2, 3), files, strict=True)]
    for chunk in chunks:  # queued before the writer starts: all three wait at once
        recorder.record(chunk)
    assert [c.parameters is None for c in chunks] == [True, True, False]
    with recorder:
        pass
    with reading(engine) as conn:
        saved = curves.read_parameters(conn, job_pk=job_pk)
    assert saved is not None and saved.step == 3 and saved.scalars == 2
    assert saved.file == bytes(files[2])


#: the tables as revision 0004 left them, as far as the migration test writes them
JOBS_0004 = sa.table(
    "jobs",
    *(sa.column(c) for c in ("pk", "id", "status", "device", "created_at", "step", "epoch")),
    *(sa.column(c) for c in ("total_steps", "total_epochs", "cancel_requested", "attempts")),
    sa.column("spec", sa.JSON()),
)
PARAMETERS_0004 = sa.table(
    "job_parameters", sa.column("job_pk"), sa.column("step"), sa.column("parameters")
)


@both_backends
def test_the_migration_converts_json_parameters_and_back(db_url: str) -> None:
    engine = make_engine(db_url)
    _migrate_to(engine, "0004")
    # a float32 fit job's and a minimize job's (no dtype: float64), with a value not finite
    stored = {"layers.0.weight": [[0.5, None], [-1.25, 3.0]], "layers.0.bias": [2.0, -0.0]}
    with writing(engine) as conn:
        for pk, spec in ((1, {"dtype": "float32"}), (2, {"task": "minimize"})):
            conn.execute(JOBS_0004.insert().values(**_job_0004(pk, spec)))
            conn.execute(
                PARAMETERS_0004.insert().values(
                    job_pk=pk, step=4, parameters=orjson.dumps(stored).decode()
                )
            )
    migrate(engine)
    with reading(engine) as conn:
        saved = [curves.read_parameters(conn, job_pk=pk) for pk in (1, 2)]
    for found, dtype in zip(saved, (torch.float32, torch.float64), strict=True):
        assert found is not None and found.step == 4 and found.scalars == 6 and found.file
        assert orjson.loads(curves.parameters_json(found.file)) == stored
        assert list(orjson.loads(curves.parameters_json(found.file))) == list(stored)
        assert {t.dtype for t in safetensors.torch.load(found.file).values()} == {dtype}
    _migrate_to(engine, "0004", down=True)
    with reading(engine) as conn:
        texts = conn.exec_driver_sql("SELECT parameters FROM job_parameters ORDER BY job_pk")
        assert [orjson.loads(t) for (t,) in texts] == [stored, stored]
    engine.dispose()


def _job_0004(pk: int, spec: dict[str, Any]) -> dict[str, Any]:
    counts = dict.fromkeys(("step", "epoch", "total_steps", "total_epochs", "attempts"), 0)
    return {
        "pk": pk,
        "id": f"job{pk}",
        "status": "succeeded",
        "device": "cpu",
        "created_at": datetime.now(UTC).replace(tzinfo=None),
        "cancel_requested": False,
        "spec": spec,
        **counts,
    }


def _migrate_to(engine: Engine, revision: str, *, down: bool = False) -> None:
    cfg = alembic_config()
    with writing(engine) as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
