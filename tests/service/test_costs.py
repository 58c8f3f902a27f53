"""Issue 9: what a job costs is checked at POST, before anything is stored (API.md section 9).

Each finding of the issue's hostile trial is a case here: today's answer is a 422 that names
the field, the limit, its value and the variable that raises it.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from service.spec import FitSpec, costs, job_spec_adapter
from tests.conftest import fit_spec


def refused(client: TestClient, spec: dict[str, Any], path: str = "/jobs") -> dict[str, Any]:
    """The one error of a 422 answer, and nothing stored."""
    response = client.post(path, json=spec)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert client.get("/jobs").json()["items"] == []
    return error  # type: ignore[no-any-return]


# --- the findings, each refused where it is written ------------------------------------------


def test_a_billion_classes_is_refused_at_the_labels(client: TestClient) -> None:
    # finding 1: accepted, then a 10^9-class output layer took the worker down at 22 GB
    data = {"type": "inline", "x": [[0], [1]], "y": [0, 1_000_000_000]}
    error = refused(client, {"model": {"type": "softmax"}, "data": data})
    assert error["loc"] == ["body", "fit", "data", "inline", "y"]
    assert "1000000001 outputs" in error["msg"]
    assert "10000 classes (DESCENT_MAX_CLASSES)" in error["msg"]


def test_blobs_past_the_class_limit_are_refused(client: TestClient) -> None:
    data = {"type": "classification", "kind": "blobs", "n_samples": 20_000, "n_classes": 10_001}
    error = refused(client, {"model": {"type": "softmax"}, "data": data})
    assert error["loc"] == ["body", "fit", "data", "classification", "n_classes"]
    assert "DESCENT_MAX_CLASSES" in error["msg"]


@pytest.mark.parametrize(
    ("layers", "parameters"),
    [(16, 1_007_370_250), (3, 134_848_522)],  # findings 2 and 3
)
def test_a_model_past_the_parameter_limit_is_refused(
    client: TestClient, layers: int, parameters: int
) -> None:
    # digits: 64 inputs, 10 classes; each 8192-unit layer adds 8192 * (width + 1)
    worked = 64 * 8192 + 8192 + (layers - 1) * (8192 * 8192 + 8192) + 8192 * 10 + 10
    assert worked == parameters
    error = refused(client, {"model": {"type": "mlp", "hidden": [8192] * layers}})
    assert error["loc"] == ["body", "fit", "model"]
    assert error["msg"] == (
        f"Value error, the model has {parameters} parameters; the limit is 50000000 "
        "(DESCENT_MAX_PARAMETERS)"
    )


def test_data_past_the_value_limit_is_refused(client: TestClient) -> None:
    # finding 4: a MemoryError (59.6 GiB) inside the worker
    data = {"type": "linear", "n_samples": 1_000_000, "n_features": 8000}
    error = refused(client, fit_spec(data=data))
    assert error["loc"] == ["body", "fit", "data"]
    assert "8000000000 values" in error["msg"]
    assert "100000000 (DESCENT_MAX_VALUES)" in error["msg"]


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [  # finding 5: each was an `internal` failure or a misleading `diverged`
        ({"optimizer": {"type": "sgd", "lr": 1e308}}, ["optimizer", "sgd", "lr"]),
        (
            {"data": {"type": "linear", "x_range": [-1e308, 1e308]}},
            ["data", "linear", "x_range", 0],
        ),
        ({"data": {"type": "inline", "x": [[1e308]], "y": [1.0]}}, ["data", "inline", "x", 0, 0]),
        ({"data": {"type": "linear", "weights": [1e13]}}, ["data", "linear", "weights", 0]),
        ({"penalty": {"l2": 1e300}}, ["penalty", "l2"]),
        (
            {"schedule": {"type": "exponential", "gamma": 1e40}},
            ["schedule", "exponential", "gamma"],
        ),
    ],
)
def test_numbers_that_could_overflow_are_refused(
    client: TestClient, overrides: dict[str, Any], loc: list[Any]
) -> None:
    response = client.post("/jobs", json=fit_spec(**overrides))
    assert response.status_code == 422, response.text
    assert ["body", "fit", *loc] in [e["loc"] for e in response.json()["detail"]]
    assert client.get("/jobs").json()["items"] == []


def test_a_starting_point_that_could_overflow_is_refused(client: TestClient) -> None:
    spec = {"task": "minimize", "objective": {"type": "quadratic"}, "x0": [1e200], "steps": 10}
    error = refused(client, spec)
    assert error["loc"] == ["body", "minimize", "x0", 0]
    assert error["type"] == "less_than_equal"


def test_a_long_path_of_many_dimensions_is_refused(client: TestClient) -> None:
    spec = {"task": "minimize", "objective": {"type": "quadratic"}, "x0": [1.0] * 10_000}
    error = refused(client, {**spec, "steps": 100_000})
    assert error["loc"] == ["body", "minimize", "steps"]
    assert "1000010000 values" in error["msg"] and "DESCENT_MAX_VALUES" in error["msg"]


# --- the memory estimate ----------------------------------------------------------------------


def test_the_estimate_is_the_formula_worked_by_hand() -> None:
    spec = job_spec_adapter.validate_python(
        {"model": {"type": "mlp", "hidden": [10]}, "data": {"type": "digits"}, "batch_size": 32}
    )
    assert isinstance(spec, FitSpec)
    cost = costs.fit_cost(spec)
    parameters = 64 * 10 + 10 + 10 * 10 + 10
    assert (cost.parameters, cost.classes, cost.values) == (parameters, 10, 1797 * 64)
    # adam keeps two tensors a parameter; with the parameters and gradients, four; float32
    assert cost.model_bytes == 4 * parameters * 4
    values = 1797 * 64
    assert cost.data_bytes == 2 * values * 8 + 2 * values * 4 + 4 * 1797 * 8
    # the evaluation of the whole set (1797 rows): the widest layer (10) and the one after,
    # the 10 logits and their log-softmax
    evaluation = 1797 * (2 * 10 + 2 * 10) * 4
    activations = 3 * 32 * (10 + 10) * 4
    assert cost.batch_bytes == max(evaluation, activations) == evaluation
    # a flush serialises the parameters and adam's state twice (a checkpoint and the driver's
    # copy) and the parameters twice: more than a step's two temporaries
    assert cost.transient_bytes == 2 * 4 * parameters * 4
    assert cost.peak_bytes == cost.model_bytes + cost.data_bytes + cost.step_bytes


@pytest.fixture
def small_worker(settings: Settings) -> Any:
    """An app whose workers may use 256 MiB each."""
    small = settings.model_copy(update={"worker_memory": 256 << 20})
    with TestClient(create_app(small)) as client:
        yield client


def test_a_job_past_the_worker_memory_is_refused_naming_its_parts(small_worker: Any) -> None:
    # 8.7M parameters under adam: 139 MB for the model and its state, 278 MB more in a flush
    spec = {"model": {"type": "mlp", "hidden": [4096, 2048]}, "optimizer": {"type": "adam"}}
    error = refused(small_worker, spec)
    assert error["loc"] == ["body", "fit", "model"]
    msg = error["msg"]
    assert "estimated peak memory" in msg and "a worker may use 0.25 GiB" in msg
    assert "(DESCENT_WORKER_MEMORY, 268435456 bytes)" in msg


def test_a_batch_whose_activations_pass_the_budget_is_refused_at_the_batch(
    small_worker: Any,
) -> None:
    data = {"type": "linear", "n_samples": 100_000, "n_features": 4}
    spec = fit_spec(model={"type": "mlp", "hidden": [1024]}, data=data, batch_size=None)
    error = refused(small_worker, spec)
    assert error["loc"] == ["body", "fit", "batch_size"]
    assert small_worker.post("/jobs", json={**spec, "batch_size": 256}).status_code == 201


def test_a_sweep_point_past_a_limit_is_refused_and_no_job_stored(client: TestClient) -> None:
    body = {
        "name": "widths",
        "base": fit_spec(model={"type": "mlp", "hidden": [8]}, data={"type": "digits"}),
        "grid": {"model.hidden": [[8], [8192, 8192]]},
    }
    response = client.post("/sweeps", json=body)
    assert response.status_code == 422, response.text
    text = response.text
    assert "DESCENT_MAX_PARAMETERS" in text and "67" in text
    assert client.get("/sweeps").json()["items"] == []
    assert client.get("/jobs").json()["items"] == []


# --- finding 10: rules between fields, minimize's defaults, trajectories ------------------------


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"data": {"type": "linear", "weights": [1.0, 2.0]}}, ["data", "linear", "weights"]),
        ({"optimizer": {"type": "ista", "lr": 0.1}}, ["batch_size"]),
        ({"loss": "bce"}, ["loss"]),
        ({"optimizer": {"type": "sgd", "nesterov": True}}, ["optimizer", "sgd", "nesterov"]),
        ({"epochs": 10_000_000}, ["epochs"]),
    ],
)
def test_a_rule_between_fields_names_the_field(
    client: TestClient, overrides: dict[str, Any], loc: list[Any]
) -> None:
    response = client.post("/jobs", json=fit_spec(**overrides))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "fit", *loc]


def test_minimize_takes_gradients_and_defaults_its_optimizer(client: TestClient) -> None:
    spec = {"task": "minimize", "objective": {"type": "booth"}, "x0": [0.0, 0.0], "steps": 5}
    job = client.post("/jobs", json={**spec, "gradients": "autograd"})
    assert job.status_code == 201, job.text
    assert job.json()["spec"]["optimizer"] == {
        "type": "adam",
        "lr": 0.001,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": False,
    }
    manual = client.post("/jobs", json={**spec, "gradients": "manual"})
    assert manual.status_code == 422
    [error] = manual.json()["detail"]
    assert error["loc"] == ["body", "minimize", "gradients"]
    assert "come from autograd" in error["msg"]


def test_a_large_models_trajectory_says_why_it_is_empty(client: TestClient) -> None:
    spec = fit_spec(model={"type": "mlp", "hidden": [64, 64]})
    big = client.post("/jobs", json=spec).json()
    response = client.get(f"/jobs/{big['id']}/trajectory")
    assert response.status_code == 404
    detail = response.json()["detail"]
    parameters = (1 * 64 + 64) + (64 * 64 + 64) + (64 * 1 + 1)
    assert f"the model has {parameters} parameters" in detail and "at most 1000" in detail
    small = client.post("/jobs", json=fit_spec()).json()  # 2 parameters: kept, none yet
    assert client.get(f"/jobs/{small['id']}/trajectory").json() == {
        "job_id": small["id"],
        "steps": [],
        "points": [],
    }
