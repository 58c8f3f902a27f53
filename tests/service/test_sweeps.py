"""Sweeps (API.md section 6): a grid's points become jobs in one transaction, read, ranked,
plotted, cancelled and deleted whole, each token seeing only its own."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, func, insert, inspect, select

from service.config import Settings
from service.db.engine import make_engine, reading, writing
from service.db.migrate import alembic_config, migrate
from service.db.tables import (
    CheckpointRow,
    CurveChunkRow,
    CurveSeriesRow,
    JobRow,
    ParametersRow,
    SweepRow,
    TrajectoryRow,
)
from service.errors import InvalidSweep, NotFound
from service.main import create_app
from service.schemas.sweeps import SweepRun
from service.spec import FitSpec
from service.spec import sweep as sweep_spec
from service.spec.sweep import SweepRequest
from service.store import chunks, job_queue, summaries, sweeps
from tests.conftest import both_backends, fit_spec
from worker.claims import Worker

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SGD = {"type": "sgd", "lr": 0.1}
ADAM = {"type": "adam", "lr": 0.1}
ISTA = {"type": "ista", "lr": 0.1}
ALPHA = {"Authorization": "Bearer alpha"}
BETA = {"Authorization": "Bearer beta"}


@pytest.fixture
def worker(settings: Settings) -> Worker:
    """A worker that takes one job at a time, so a test can stop between runs; runs trained
    as a group have tests of their own (tests/e2e/test_grouped_sweep.py)."""
    return Worker(settings.model_copy(update={"group_runs": 1}), device="cpu")


def make(client: TestClient, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = client.post("/sweeps", json=body, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def count(engine: Engine, table: Any) -> int:
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def run_all(worker: Worker) -> int:
    ran = 0
    while worker.run_one():
        ran += 1
    return ran


# --- the grid ----------------------------------------------------------------------------


def test_points_are_the_cartesian_product_last_path_fastest() -> None:
    grid = {"a": [1, 2], "b.c": ["x", "y", "z"], "d": [None]}
    assert sweep_spec.points(grid) == [
        {"a": 1, "b.c": "x", "d": None},
        {"a": 1, "b.c": "y", "d": None},
        {"a": 1, "b.c": "z", "d": None},
        {"a": 2, "b.c": "x", "d": None},
        {"a": 2, "b.c": "y", "d": None},
        {"a": 2, "b.c": "z", "d": None},
    ]
    assert sweep_spec.points({}) == [{}]


def test_a_sweep_is_one_job_per_point(client: TestClient) -> None:
    body = {
        "name": "sgd vs adam",
        "base": fit_spec(),
        "grid": {"optimizer": [SGD, ADAM], "batch_size": [None, 1, 16]},
    }
    sweep = make(client, body)
    assert sweep["name"] == "sgd vs adam" and sweep["created_at"].endswith("Z")
    expected = [
        {"optimizer": optimizer, "batch_size": batch}
        for optimizer in (SGD, ADAM)
        for batch in (None, 1, 16)
    ]
    assert [job["overrides"] for job in sweep["jobs"]] == expected
    assert len({job["id"] for job in sweep["jobs"]}) == 6
    for job, overrides in zip(sweep["jobs"], expected, strict=True):
        stored = client.get(f"/jobs/{job['id']}").json()
        assert stored["sweep_id"] == sweep["id"] and stored["status"] == "queued"
        assert stored["spec"]["optimizer"]["type"] == overrides["optimizer"]["type"]
        assert stored["spec"]["optimizer"]["lr"] == 0.1
        assert stored["spec"]["batch_size"] == overrides["batch_size"]
        assert stored["spec"]["epochs"] == 3  # the base's
        # the job's size follows its own spec: 52 training rows
        steps = {None: 1, 1: 52, 16: 4}[overrides["batch_size"]]
        assert stored["progress"]["total_steps"] == 3 * steps
    # the jobs are jobs like any other: listed, newest first, with their sweep
    listed = client.get("/jobs").json()["items"]
    assert [j["id"] for j in listed] == [j["id"] for j in reversed(sweep["jobs"])]
    assert {j["sweep_id"] for j in listed} == {sweep["id"]}
    alone = client.post("/jobs", json=fit_spec()).json()
    assert alone["sweep_id"] is None


def test_whole_objects_are_set_before_their_fields(client: TestClient) -> None:
    # the leaf comes first in the grid, yet it lands in each whole optimizer
    sweep = make(
        client,
        {"base": fit_spec(), "grid": {"optimizer.lr": [0.5, 0.05], "optimizer": [SGD, ADAM]}},
    )
    specs = [client.get(f"/jobs/{job['id']}").json()["spec"] for job in sweep["jobs"]]
    assert [(s["optimizer"]["type"], s["optimizer"]["lr"]) for s in specs] == [
        ("sgd", 0.5),
        ("adam", 0.5),
        ("sgd", 0.05),
        ("adam", 0.05),
    ]
    assert specs[1]["optimizer"]["betas"] == [0.9, 0.999]  # adam's defaults, filled in
    assert sweep["jobs"][1]["overrides"] == {"optimizer.lr": 0.5, "optimizer": ADAM}


def test_a_leaf_into_an_object_the_base_leaves_out(client: TestClient) -> None:
    base = fit_spec()
    del base["optimizer"]  # so the default, adam with lr 0.001
    sweep = make(client, {"base": base, "grid": {"optimizer.betas": [[0.5, 0.6]]}})
    spec = client.get(f"/jobs/{sweep['jobs'][0]['id']}").json()["spec"]
    assert spec["optimizer"] == {
        "type": "adam",
        "lr": 0.001,
        "betas": [0.5, 0.6],
        "eps": 1e-08,
        "weight_decay": 0.0,
        "amsgrad": False,
    }


def test_points_are_made_from_the_base_as_sent(client: TestClient) -> None:
    # the base's loss is left to each point: cross_entropy for digits, mse for linear data
    base = fit_spec(model={"type": "mlp", "hidden": [4]}, data={"type": "digits"})
    linear = {"type": "linear", "n_samples": 64, "weights": [2.0]}
    sweep = make(client, {"base": base, "grid": {"data": [{"type": "digits"}, linear]}})
    losses = [client.get(f"/jobs/{j['id']}").json()["spec"]["loss"] for j in sweep["jobs"]]
    assert losses == ["cross_entropy", "mse"]
    stored = client.get(f"/sweeps/{sweep['id']}").json()
    assert stored["base"] == base  # as sent, no default filled in
    assert stored["grid"] == {"data": [{"type": "digits"}, linear]}


def test_an_empty_grid_is_the_base_alone(client: TestClient) -> None:
    sweep = make(client, {"base": fit_spec(seed=7), "grid": {}})
    assert [job["overrides"] for job in sweep["jobs"]] == [{}]
    assert client.get(f"/jobs/{sweep['jobs'][0]['id']}").json()["spec"]["seed"] == 7


def test_minimize_sweeps(client: TestClient) -> None:
    base = {
        "task": "minimize",
        "objective": {"type": "quadratic"},
        "x0": [10.0],
        "optimizer": SGD,
        "steps": 20,
    }
    sweep = make(client, {"base": base, "grid": {"x0": [[1.0], [1.0, 2.0]], "seed": [0, 1]}})
    specs = [client.get(f"/jobs/{j['id']}").json()["spec"] for j in sweep["jobs"]]
    # quadratic's scales are filled in per point, to each point's dimension
    assert [s["objective"]["scales"] for s in specs] == [[1.0], [1.0], [1.0, 1.0], [1.0, 1.0]]
    assert [s["seed"] for s in specs] == [0, 1, 0, 1]


# --- what is refused, and that nothing is stored then --------------------------------------


def assert_nothing_stored(engine: Engine) -> None:
    assert count(engine, SweepRow) == 0
    assert count(engine, JobRow) == 0


def test_an_invalid_point_is_422_naming_it_and_nothing_is_stored(
    client: TestClient, engine: Engine
) -> None:
    body = {"base": fit_spec(), "grid": {"optimizer": [SGD, ISTA], "batch_size": [None, 16]}}
    response = client.post("/sweeps", json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]  # only (ista, 16) is invalid
    assert error["loc"] == ["body", "grid", "fit", "batch_size"]
    assert error["msg"].startswith(
        'grid point {"optimizer": {"type": "ista", "lr": 0.1}, "batch_size": 16}: '
    )
    assert "set batch_size to null, not 16" in error["msg"]
    assert error["ctx"]["overrides"] == {"optimizer": ISTA, "batch_size": 16}
    assert "input" not in error  # the point's whole spec, not repeated
    assert_nothing_stored(engine)


def test_an_invalid_field_is_located_under_grid(client: TestClient, engine: Engine) -> None:
    body = {"base": fit_spec(), "grid": {"optimizer.lr": [0.1, -1.0, 0.0]}}
    errors = client.post("/sweeps", json=body).json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "grid", "fit", "optimizer", "sgd", "lr"]] * 2
    assert [e["ctx"]["overrides"] for e in errors] == [
        {"optimizer.lr": -1.0},
        {"optimizer.lr": 0.0},
    ]
    assert all("Input should be greater than 0" in e["msg"] for e in errors)
    assert [e["input"] for e in errors] == [-1.0, 0.0]
    assert_nothing_stored(engine)


@pytest.mark.parametrize(
    ("path", "values", "said"),
    [
        ("learning_rate", [0.1], "no field 'learning_rate' in the job spec; its fields are"),
        ("optimizer.learning_rate", [0.1], "no field 'learning_rate' in 'optimizer'"),
        ("batch_size.x", [1], "'batch_size.x' leads into 'batch_size', which is not an object"),
        ("schedule.gamma", [0.5], "cannot set 'schedule.gamma': 'schedule' is null here"),
        ("objective", [{"type": "booth"}], "no field 'objective' in the job spec"),
    ],
)
def test_a_path_that_names_nothing_is_422(
    client: TestClient, engine: Engine, path: str, values: list[Any], said: str
) -> None:
    grid = {"seed": [0, 1], path: values}
    response = client.post("/sweeps", json={"base": fit_spec(), "grid": grid})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert {tuple(e["loc"]) for e in errors} == {("body", "grid", path)}
    assert said in errors[0]["msg"]
    assert_nothing_stored(engine)


@pytest.mark.parametrize(
    ("body", "loc", "said"),
    [
        ({"grid": {"seed": []}}, ["body", "grid", "seed"], "at least 1 item"),
        ({"grid": {"optimizer..lr": [1]}}, ["body", "grid", "optimizer..lr", "[key]"], "pattern"),
        ({"grid": {"seed": [1], "x": 1}}, ["body", "grid", "x"], "valid list"),
        ({"grid": {"seed": [2**64]}}, ["body", "grid", "seed"], "64-bit"),
        ({"grid": {"seed": [1]}, "extra": 1}, ["body", "extra"], "Extra inputs"),
        ({"name": "a\x00b", "grid": {}}, ["body", "name"], "pattern"),
        ({"base": {"epochs": 0}, "grid": {}}, ["body", "base", "fit", "epochs"], "greater than"),
        ({}, ["body", "grid"], "Field required"),
    ],
)
def test_a_malformed_request_is_422(
    client: TestClient, engine: Engine, body: dict[str, Any], loc: list[Any], said: str
) -> None:
    response = client.post("/sweeps", json={"base": fit_spec(), **body})
    assert response.status_code == 422, response.text
    assert any(e["loc"] == loc and said in e["msg"] for e in response.json()["detail"]), (
        response.text
    )
    assert_nothing_stored(engine)


def test_non_finite_grid_values_are_422(client: TestClient, engine: Engine) -> None:
    raw = b'{"base": {"epochs": 1}, "grid": {"optimizer": [{"type": "sgd", "lr": NaN}]}}'
    response = client.post("/sweeps", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "finite" in response.json()["detail"][0]["msg"]
    assert_nothing_stored(engine)


@pytest.fixture
def limited(db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, max_sweep_jobs=4)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_grid_past_the_limit_is_422(limited: TestClient, settings: Settings) -> None:
    grid = {"seed": [0, 1, 2], "optimizer.lr": [0.1, 0.01]}
    response = limited.post("/sweeps", json={"base": fit_spec(), "grid": grid})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "grid"]
    assert error["msg"] == (
        "the grid has 6 points (3 x 2); the limit is 4 jobs a sweep (DESCENT_MAX_SWEEP_JOBS)"
    )
    engine = make_engine(settings.database_url)
    assert_nothing_stored(engine)
    engine.dispose()
    grid["seed"] = [0, 1]
    assert len(make(limited, {"base": fit_spec(), "grid": grid})["jobs"]) == 4
    # counted, not made: 20^15 points, more than 64 bits hold
    paths = ["seed", "epochs", "batch_size", "optimizer.lr", "optimizer.momentum", "shuffle"]
    paths += ["validation_split", "penalty.l1", "penalty.l2", "model.bias", "name", "device"]
    paths += ["dtype", "loss", "gradients"]
    huge = limited.post(
        "/sweeps", json={"base": fit_spec(), "grid": dict.fromkeys(paths, [0] * 20)}
    )
    assert huge.status_code == 422
    assert huge.json()["detail"][0]["msg"].startswith(f"the grid has {20**15} points (20 x 20 x")


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_sweep_jobs == 256
    monkeypatch.setenv("DESCENT_MAX_SWEEP_JOBS", "1000")
    assert Settings().max_sweep_jobs == 1000
    monkeypatch.setenv("DESCENT_MAX_SWEEP_JOBS", "0")
    with pytest.raises(ValueError, match="max_sweep_jobs"):
        Settings()


# --- running, reading, ranking, plotting ----------------------------------------------------


def test_runs_results_and_the_ranking(client: TestClient, worker: Worker) -> None:
    # lr 1e6 diverges: it fails, with no final loss, and ranks last
    grid = {"optimizer.lr": [0.0001, 1e6, 0.01]}
    sweep = make(client, {"name": "lr", "base": fit_spec(), "grid": grid})
    ids = [job["id"] for job in sweep["jobs"]]
    queued = client.get(f"/sweeps/{sweep['id']}").json()
    assert queued["counts"] == {
        "queued": 3,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert [r["progress"]["step"] for r in queued["runs"]] == [0, 0, 0]
    assert run_all(worker) == 3

    done = client.get(f"/sweeps/{sweep['id']}").json()
    assert done["n_jobs"] == 3 and done["name"] == "lr"
    assert [r["job_id"] for r in done["runs"]] == ids  # grid order
    assert [r["status"] for r in done["runs"]] == ["succeeded", "failed", "succeeded"]
    assert done["counts"]["succeeded"] == 2 and done["counts"]["failed"] == 1
    assert done["runs"][1]["error"]["type"] == "diverged" and done["runs"][1]["result"] is None
    for run in done["runs"]:
        job = client.get(f"/jobs/{run['job_id']}").json()
        assert run["result"] == job["result"] and run["progress"] == job["progress"]
        assert run["overrides"] == {"optimizer.lr": job["spec"]["optimizer"]["lr"]}

    ranked = client.get(f"/sweeps/{sweep['id']}", params={"order": "final_loss"}).json()
    assert [r["job_id"] for r in ranked["runs"]] == [ids[2], ids[0], ids[1]]
    losses = [r["result"]["final_loss"] for r in ranked["runs"][:2]]
    assert losses == sorted(losses) and losses[0] < losses[1]
    assert client.get(f"/sweeps/{sweep['id']}", params={"order": "loss"}).status_code == 422


def test_ranking_puts_runs_without_a_finite_final_loss_last() -> None:
    def run(loss: Any, status: str = "succeeded") -> Any:
        result = None if loss == "none" else {"final_loss": loss}
        return SweepRun(
            job_id=str(loss),
            overrides={},
            status=status,
            progress={"step": 0, "total_steps": 1, "epoch": 0, "total_epochs": 1},
            result=result,
            error=None,
        )

    runs = [run(None), run(2.5), run("none", "queued"), run(math.inf), run(-1), run(0.5)]
    ranked = sorted(runs, key=sweeps._by_final_loss)
    assert [r.job_id for r in ranked] == ["-1", "0.5", "2.5", "None", "none", "inf"]


def test_curves_of_every_run(client: TestClient, worker: Worker) -> None:
    grid = {"batch_size": [None, 4]}
    sweep = make(client, {"base": fit_spec(epochs=4), "grid": grid})
    run_all(worker)
    url = f"/sweeps/{sweep['id']}/curves"
    full = client.get(url).json()
    assert full["sweep_id"] == sweep["id"] and full["name"] == "loss"
    assert [r["job_id"] for r in full["runs"]] == [j["id"] for j in sweep["jobs"]]
    assert [r["overrides"] for r in full["runs"]] == [{"batch_size": None}, {"batch_size": 4}]
    assert [r["status"] for r in full["runs"]] == ["succeeded", "succeeded"]
    # 52 training rows: 4 steps of the whole set, 4 x 13 of batches of 4
    assert [r["steps"] for r in full["runs"]] == [[1, 2, 3, 4], list(range(1, 53))]
    for run in full["runs"]:
        job = client.get(f"/jobs/{run['job_id']}/curves", params={"names": "loss"}).json()
        assert run["values"] == job["series"]["loss"]["values"]
    # thinned as a job's curves are thinned
    thin = client.get(url, params={"points": 6}).json()
    for run in thin["runs"]:
        params = {"names": "loss", "points": 6}
        job = client.get(f"/jobs/{run['job_id']}/curves", params=params).json()
        assert len(run["steps"]) <= 6
        assert (run["steps"], run["values"]) == (
            job["series"]["loss"]["steps"],
            job["series"]["loss"]["values"],
        )
    after = client.get(url, params={"after": 50}).json()
    assert [r["steps"] for r in after["runs"]] == [[], [51, 52]]
    val = client.get(url, params={"name": "val_loss"}).json()
    assert [r["steps"] for r in val["runs"]] == [[1, 2, 3, 4], [13, 26, 39, 52]]
    none = client.get(url, params={"name": "nothing"}).json()
    assert [(r["steps"], r["values"]) for r in none["runs"]] == [([], []), ([], [])]
    assert client.get(url, params={"points": 1}).status_code == 422


def test_non_finite_values_are_null(client: TestClient, engine: Engine) -> None:
    sweep = make(client, {"base": fit_spec(), "grid": {"seed": [0]}})
    with writing(engine) as conn:
        pk = conn.execute(select(JobRow.pk)).scalar_one()
        sid = conn.execute(
            insert(CurveSeriesRow).values(job_pk=pk, name="loss").returning(CurveSeriesRow.id)
        ).scalar_one()
        steps, values = summaries.as_arrays([1, 2, 3, 4], [0.5, None, math.inf, -math.inf])
        chunks.append(conn, sid, None, steps, values)
    response = client.get(f"/sweeps/{sweep['id']}/curves")
    assert b"NaN" not in response.content and b"Infinity" not in response.content
    [run] = response.json()["runs"]
    assert (run["steps"], run["values"]) == ([1, 2, 3, 4], [0.5, None, None, None])
    assert client.get(f"/sweeps/{sweep['id']}/plot.png").content.startswith(PNG_MAGIC)


def test_the_plot(client: TestClient, worker: Worker) -> None:
    sweep = make(
        client, {"name": "sgd vs adam", "base": fit_spec(), "grid": {"optimizer": [SGD, ADAM]}}
    )
    empty = client.get(f"/sweeps/{sweep['id']}/plot.png")  # nothing has run: a note says so
    assert empty.status_code == 200 and empty.content.startswith(PNG_MAGIC)
    run_all(worker)
    for name in ("loss", "val_loss"):
        response = client.get(f"/sweeps/{sweep['id']}/plot.png", params={"name": name})
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.content.startswith(PNG_MAGIC) and len(response.content) > 10_000


def test_the_plot_draws_the_curves_runs_with_their_overrides(
    client: TestClient, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: dict[str, Any] = {}

    def sweep_curves_png(title: str, runs: list[dict[str, Any]], *, name: str) -> bytes:
        drawn.update(title=title, runs=runs, name=name)
        return PNG_MAGIC

    monkeypatch.setattr("service.plots.charts.sweep_curves_png", sweep_curves_png)
    sweep = make(client, {"base": fit_spec(), "grid": {"optimizer": [SGD, ADAM]}})
    run_all(worker)
    assert client.get(f"/sweeps/{sweep['id']}/plot.png").content == PNG_MAGIC
    assert drawn["title"] == f"sweep {sweep['id']}" and drawn["name"] == "loss"
    curves = client.get(f"/sweeps/{sweep['id']}/curves").json()["runs"]
    assert drawn["runs"] == curves


# --- cancel, delete, 404, pages ----------------------------------------------------------------


def test_cancel_stops_every_unfinished_job(
    client: TestClient, engine: Engine, worker: Worker
) -> None:
    sweep = make(client, {"base": fit_spec(), "grid": {"seed": [0, 1, 2, 3]}})
    ids = [job["id"] for job in sweep["jobs"]]
    assert worker.run_one()  # the first succeeds
    claimed = job_queue.claim_next(engine, worker_id="w", lease_seconds=30, has_gpu=False)
    assert claimed is not None and claimed.id == ids[1]  # the second is running
    cancelled = client.post(f"/sweeps/{sweep['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert [r["status"] for r in body["runs"]] == ["succeeded", "running", "cancelled", "cancelled"]
    assert body["counts"] == {
        "queued": 0,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 2,
    }
    assert body["runs"][2]["error"] == {"type": "cancelled", "message": "cancelled while queued"}
    # the running one's worker is told, as by POST /jobs/{id}/cancel
    assert job_queue.poll(engine, job_pk=claimed.pk, worker_id="w") == "cancel"
    assert client.get(f"/jobs/{ids[0]}").json()["status"] == "succeeded"
    assert not worker.run_one()  # nothing is left queued
    # again: nothing left to cancel, and it says so as GET does
    again = client.post(f"/sweeps/{sweep['id']}/cancel").json()
    assert again == client.get(f"/sweeps/{sweep['id']}").json()


def test_delete_removes_the_sweep_its_jobs_and_their_data(
    client: TestClient, engine: Engine, worker: Worker
) -> None:
    base = {"task": "minimize", "objective": {"type": "booth"}, "x0": [0.0, 0.0], "steps": 5}
    sweep = make(client, {"base": {**base, "optimizer": SGD}, "grid": {"seed": [0, 1, 2]}})
    alone = client.post("/jobs", json={**base, "optimizer": SGD}).json()
    assert run_all(worker) == 4  # every job has curves, parameters and a trajectory
    with writing(engine) as conn:  # and one of the sweep's a checkpoint
        pk = conn.execute(select(JobRow.pk).where(JobRow.id == sweep["jobs"][0]["id"])).scalar()
        conn.execute(insert(CheckpointRow).values(job_pk=pk, step=1, epoch=0, state=b"x"))
    tables = (CurveSeriesRow, CurveChunkRow, ParametersRow, TrajectoryRow)
    before = {table: count(engine, table) for table in tables}
    assert before[CurveSeriesRow] == 4 and before[ParametersRow] == 4

    assert client.delete(f"/sweeps/{sweep['id']}").status_code == 204
    assert client.get(f"/sweeps/{sweep['id']}").status_code == 404
    for job in sweep["jobs"]:
        assert client.get(f"/jobs/{job['id']}").status_code == 404
    assert [j["id"] for j in client.get("/jobs").json()["items"]] == [alone["id"]]
    assert client.get("/sweeps").json() == {"items": [], "next_cursor": None}
    # only the job posted alone keeps its data
    assert count(engine, SweepRow) == 0 and count(engine, CheckpointRow) == 0
    for table in tables:
        assert count(engine, table) == before[table] / 4, table
    assert len(client.get(f"/jobs/{alone['id']}/curves").json()["series"]["loss"]["steps"]) == 6
    assert client.delete(f"/sweeps/{sweep['id']}").status_code == 404


def test_delete_stops_a_running_job(client: TestClient, engine: Engine) -> None:
    sweep = make(client, {"base": fit_spec(), "grid": {"seed": [0, 1]}})
    claimed = job_queue.claim_next(engine, worker_id="w", lease_seconds=30, has_gpu=False)
    assert claimed is not None
    assert client.delete(f"/sweeps/{sweep['id']}").status_code == 204
    # its worker finds the job gone, and its writes are refused
    assert job_queue.poll(engine, job_pk=claimed.pk, worker_id="w") == "lost"
    assert not job_queue.heartbeat(engine, job_pk=claimed.pk, worker_id="w", lease_seconds=30)
    assert count(engine, JobRow) == 0


def test_a_sweep_loses_a_job_deleted_alone(client: TestClient) -> None:
    sweep = make(client, {"base": fit_spec(), "grid": {"seed": [0, 1]}})
    assert client.delete(f"/jobs/{sweep['jobs'][0]['id']}").status_code == 204
    left = client.get(f"/sweeps/{sweep['id']}").json()
    assert left["n_jobs"] == 1 and [r["job_id"] for r in left["runs"]] == [sweep["jobs"][1]["id"]]
    assert client.delete(f"/sweeps/{sweep['id']}").status_code == 204


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("POST", "/cancel"),
        ("DELETE", ""),
        ("GET", "/curves"),
        ("GET", "/plot.png"),
    ],
)
def test_unknown_sweeps_are_404(client: TestClient, method: str, suffix: str) -> None:
    make(client, {"base": fit_spec(), "grid": {}})
    response = client.request(method, f"/sweeps/nope{suffix}")
    assert response.status_code == 404
    assert response.json() == {"detail": "no sweep 'nope'"}


def test_pages_newest_first(client: TestClient, worker: Worker) -> None:
    made = [
        make(client, {"name": f"s{i}", "base": fit_spec(), "grid": {"seed": list(range(i + 1))}})[
            "id"
        ]
        for i in range(5)
    ]
    worker.run_one()  # the first sweep's one job
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/sweeps", params=params).json()
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [s["id"] for s in seen] == made[::-1]
    assert [s["name"] for s in seen] == ["s4", "s3", "s2", "s1", "s0"]
    assert [s["n_jobs"] for s in seen] == [5, 4, 3, 2, 1]
    assert seen[-1]["counts"] == {
        "queued": 0,
        "running": 0,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert seen[0]["counts"]["queued"] == 5
    assert client.get("/sweeps", params={"limit": 0}).status_code == 422
    assert client.get("/sweeps", params={"cursor": "x"}).status_code == 422


# --- tokens ------------------------------------------------------------------------------


@pytest.fixture
def guarded(db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, api_tokens="alpha,beta")
    with TestClient(create_app(settings)) as client:
        yield client


def test_another_token_cannot_see_or_touch_a_sweep(guarded: TestClient) -> None:
    sweep = make(guarded, {"base": fit_spec(), "grid": {"seed": [0, 1]}}, headers=ALPHA)
    url = f"/sweeps/{sweep['id']}"
    for suffix in ("", "/curves", "/plot.png"):
        response = guarded.get(url + suffix, headers=BETA)
        assert response.status_code == 404, suffix
        assert response.json() == {"detail": f"no sweep {sweep['id']!r}"}
    assert guarded.post(f"{url}/cancel", headers=BETA).status_code == 404
    assert guarded.delete(url, headers=BETA).status_code == 404
    assert guarded.get("/sweeps", headers=BETA).json() == {"items": [], "next_cursor": None}
    assert guarded.get("/jobs", headers=BETA).json() == {"items": [], "next_cursor": None}
    for job in sweep["jobs"]:
        assert guarded.get(f"/jobs/{job['id']}", headers=BETA).status_code == 404
    # beta's attempts changed nothing; alpha sees and owns all of it
    mine = guarded.get(url, headers=ALPHA).json()
    assert mine["counts"]["queued"] == 2
    assert [s["id"] for s in guarded.get("/sweeps", headers=ALPHA).json()["items"]] == [sweep["id"]]
    listed = guarded.get("/jobs", headers=ALPHA).json()["items"]
    assert {j["id"] for j in listed} == {j["id"] for j in sweep["jobs"]}
    assert guarded.post(f"{url}/cancel", headers=ALPHA).json()["counts"]["cancelled"] == 2
    assert guarded.delete(url, headers=ALPHA).status_code == 204
    assert guarded.get("/jobs", headers=ALPHA).json()["items"] == []


def test_a_sweep_without_a_token_is_401(guarded: TestClient) -> None:
    body = {"base": fit_spec(), "grid": {"seed": [0]}}
    assert guarded.post("/sweeps", json=body).status_code == 401
    assert guarded.post("/sweeps", json={"grid": 1}).status_code == 401  # not a 422
    assert guarded.get("/sweeps").status_code == 401
    assert guarded.get("/sweeps", headers=ALPHA).json()["items"] == []


def test_a_sweep_cannot_train_on_another_tokens_dataset(guarded: TestClient) -> None:
    files = {"file": ("d.csv", b"a,y\n1,0\n2,1\n3,0\n4,1\n", "text/csv")}
    dataset = guarded.post("/datasets", files=files, headers=ALPHA).json()
    blobs = {"type": "classification", "kind": "blobs", "n_classes": 2}
    base = fit_spec(model={"type": "logistic"}, data=blobs, batch_size=None, epochs=1)
    body = {"base": base, "grid": {"data": [{"type": "dataset", "id": dataset["id"]}]}}
    refused = guarded.post("/sweeps", json=body, headers=BETA)
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["detail"]
    assert f"there is no dataset {dataset['id']!r}" in error["msg"]
    assert error["loc"][:4] == ["body", "grid", "fit", "data"]
    assert guarded.get("/sweeps", headers=BETA).json()["items"] == []
    assert len(make(guarded, body, headers=ALPHA)["jobs"]) == 1


# --- the store, on both backends -------------------------------------------------------------


def request(**overrides: Any) -> SweepRequest:
    body = {"name": "store", "base": fit_spec(), "grid": {"optimizer": [SGD, ADAM], "seed": [0, 1]}}
    return SweepRequest.model_validate(body | overrides)


@both_backends
def test_store_round_trip(engine: Engine) -> None:
    made = sweeps.create(engine, request=request(), owner="alpha", max_jobs=256)
    assert len(made.jobs) == 4 and made.jobs[3].overrides == {"optimizer": ADAM, "seed": 1}
    with pytest.raises(NotFound):
        sweeps.get(engine, sweep_id=made.id, owner="beta")
    sweep = sweeps.get(engine, sweep_id=made.id, owner="alpha")
    assert [r.job_id for r in sweep.runs] == [j.id for j in made.jobs]
    assert sweep.counts.queued == 4 and sweep.base == fit_spec()
    job = job_queue.get(engine, job_id=made.jobs[0].id, owner="alpha")
    assert job.sweep_id == made.id and job.spec["optimizer"]["type"] == "sgd"
    items, cursor = sweeps.list_page(engine, owner="alpha", limit=10, cursor=None)
    assert [(s.id, s.n_jobs) for s in items] == [(made.id, 4)] and cursor is None
    assert sweeps.list_page(engine, owner="beta", limit=10, cursor=None) == ([], None)

    claimed = job_queue.claim_next(engine, worker_id="w", lease_seconds=30, has_gpu=False)
    assert claimed is not None and claimed.id == made.jobs[0].id
    cancelled = sweeps.cancel(engine, sweep_id=made.id, owner="alpha")
    assert (cancelled.counts.running, cancelled.counts.cancelled) == (1, 3)
    assert job_queue.poll(engine, job_pk=claimed.pk, worker_id="w") == "cancel"

    sweeps.delete_sweep(engine, sweep_id=made.id, owner="alpha")
    assert count(engine, SweepRow) == 0 and count(engine, JobRow) == 0
    assert job_queue.poll(engine, job_pk=claimed.pk, worker_id="w") == "lost"


@both_backends
def test_store_an_invalid_point_stores_nothing(engine: Engine) -> None:
    bad = request(grid={"optimizer": [SGD, ISTA], "batch_size": [None, 16]})
    with pytest.raises(InvalidSweep) as raised:
        sweeps.create(engine, request=bad, owner=None, max_jobs=256)
    assert [e["ctx"]["overrides"] for e in raised.value.errors] == [
        {"optimizer": ISTA, "batch_size": 16}
    ]
    with pytest.raises(InvalidSweep, match="DESCENT_MAX_SWEEP_JOBS"):
        sweeps.create(engine, request=request(), owner=None, max_jobs=3)
    assert count(engine, SweepRow) == 0 and count(engine, JobRow) == 0


def test_unknown_path() -> None:
    assert sweep_spec.unknown_path("optimizer.momentum", FitSpec) is None
    assert sweep_spec.unknown_path("model.hidden", FitSpec) is None
    assert sweep_spec.unknown_path("schedule.t_max", FitSpec) is None  # through `| None`
    assert sweep_spec.unknown_path("data.x", FitSpec) is None  # a field of one data type
    assert sweep_spec.unknown_path("model.hidden.0", FitSpec) == (
        "'model.hidden.0' leads into 'model.hidden', which is not an object with fields"
    )
    assert "no field 'x0' in the job spec" in str(sweep_spec.unknown_path("x0", FitSpec))


# --- the migration -------------------------------------------------------------------------


@both_backends
def test_the_migration_keeps_every_job_and_its_curves(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    cfg = alembic_config()
    with writing(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    with writing(engine) as conn:
        conn.exec_driver_sql(
            "INSERT INTO jobs (id, status, spec, device, created_at, step, total_steps, epoch,"
            " total_epochs, cancel_requested, attempts) VALUES ('old', 'succeeded', '{}',"
            " 'cpu', '2026-01-01 00:00:00', 3, 3, 1, 1, false, 1)"
        )
        pk = conn.execute(select(JobRow.pk)).scalar_one()
        conn.execute(insert(CurveSeriesRow).values(job_pk=pk, name="loss"))
    migrate(engine)
    with reading(engine) as conn:
        row = conn.execute(select(JobRow.id, JobRow.sweep_pk, JobRow.overrides)).one()
        assert tuple(row) == ("old", None, None)
        assert conn.execute(select(func.count()).select_from(CurveSeriesRow)).scalar() == 1
    assert job_queue.get(engine, job_id="old", owner=None).sweep_id is None
    engine.dispose()


def test_the_downgrade_on_sqlite_keeps_the_curves_or_refuses(engine: Engine, db_url: str) -> None:
    job = job_queue.create(engine, spec={}, owner=None, total_steps=1, total_epochs=1)
    with writing(engine) as conn:
        pk = conn.execute(select(JobRow.pk).where(JobRow.id == job.id)).scalar_one()
        conn.execute(insert(CurveSeriesRow).values(job_pk=pk, name="loss"))
    cfg = alembic_config()
    # the service's connections enforce foreign keys: copying `jobs` would cascade
    with pytest.raises(RuntimeError, match="PRAGMA foreign_keys = OFF"), writing(engine) as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    plain = create_engine(db_url)  # foreign keys off, SQLite's default
    with plain.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    plain.dispose()
    with reading(engine) as conn:
        assert conn.execute(select(func.count()).select_from(CurveSeriesRow)).scalar() == 1
        assert "sweeps" not in inspect(conn).get_table_names()
    migrate(engine)  # and up again
    assert count(engine, JobRow) == 1 and count(engine, SweepRow) == 0
