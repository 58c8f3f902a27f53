"""Bad specs answer 422 naming the field and the reason, and store nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import fit_spec

INLINE = {"type": "inline", "x": [[0.0], [1.0], [2.0]], "y": [0, 1, 1]}


def _detail_text(response: Any) -> str:
    return str(response.json()["detail"])


BAD_SPECS = [
    pytest.param({"model": {"type": "perceptron"}}, "perceptron", id="unknown-model"),
    pytest.param({"optimizer": {"type": "lbfgs"}}, "lbfgs", id="unknown-optimizer"),
    pytest.param({"data": {"type": "mnist"}}, "mnist", id="unknown-data"),
    pytest.param({"optimizer": {"type": "sgd", "lr": -0.1}}, "lr", id="negative-lr"),
    pytest.param({"optimizer": {"type": "adam", "lr": 0}}, "lr", id="zero-lr"),
    pytest.param(
        {"model": {"type": "softmax"}, "loss": "bce", "data": {"type": "digits"}},
        "loss 'bce' does not fit model 'softmax'",
        id="bce-on-softmax",
    ),
    pytest.param(
        {"model": {"type": "linear"}, "loss": "cross_entropy"},
        "does not fit model 'linear'",
        id="ce-on-linear",
    ),
    pytest.param(
        {"model": {"type": "mlp"}, "loss": "mse", "data": {"type": "digits"}},
        "mse",
        id="mse-on-labels",
    ),
    pytest.param(
        {"model": {"type": "logistic"}, "data": {"type": "digits"}},
        "10 classes",
        id="bce-on-ten-classes",
    ),
    pytest.param(
        {"data": {"type": "inline", "x": [[1.0], [2.0]], "y": [1.0]}},
        "2 rows but data.y has 1",
        id="inline-lengths",
    ),
    pytest.param(
        {"data": {"type": "inline", "x": [[1.0, 2.0], [3.0]], "y": [1.0, 2.0]}},
        "ragged: row 1",
        id="inline-ragged",
    ),
    pytest.param(
        {"model": {"type": "softmax"}, "data": {**INLINE, "y": [0, 0.5, 1]}},
        "data.y[1] is 0.5",
        id="fractional-labels",
    ),
    pytest.param(
        {"model": {"type": "logistic"}, "data": {**INLINE, "y": [0, -1, 1]}},
        "data.y[1] is -1",
        id="negative-label",
    ),
    pytest.param({"model": {"type": "mlp", "hidden": [0]}}, "hidden", id="hidden-width-0"),
    pytest.param({"epochs": 0}, "epochs", id="epochs-0"),
    pytest.param({"batch_size": 0}, "batch_size", id="batch-size-0"),
    pytest.param({"validation_split": 1.0}, "validation_split", id="split-1"),
    pytest.param({"device": "tpu"}, "device", id="device"),
    pytest.param({"learning_rate": 0.1}, "learning_rate", id="unknown-field"),
    pytest.param({"task": "dream"}, "task", id="unknown-task"),
    pytest.param({"model": {"type": "mlp", "hidden": [8] * 17}}, "limit is 16", id="layers"),
    pytest.param({"model": {"type": "mlp", "hidden": [9000]}}, "limit is 8192", id="width"),
    pytest.param(
        {"data": {"type": "linear", "n_samples": 100_000}, "batch_size": 1, "epochs": 200},
        "limit is 10000000",
        id="steps-limit",
    ),
    pytest.param(
        {"data": {"type": "linear", "n_samples": 2_000_000}}, "limit is 1000000", id="rows"
    ),
    pytest.param(
        {"data": {"type": "classification", "kind": "moons", "n_classes": 3}},
        "2-D with 2 classes",
        id="moons-classes",
    ),
    pytest.param(
        {"optimizer": {"type": "sgd", "lr": 0.1, "nesterov": True}},
        "nesterov",
        id="nesterov-without-momentum",
    ),
    pytest.param({"schedule": {"type": "step"}}, "step_size", id="schedule-missing-field"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD_SPECS)
def test_bad_spec_is_422_naming_the_field(
    client: TestClient, overrides: dict[str, Any], expected: str
) -> None:
    response = client.post("/jobs", json=fit_spec(**overrides))
    assert response.status_code == 422, response.text
    assert expected in _detail_text(response)
    assert client.get("/jobs").json()["items"] == []


def test_non_finite_numbers_are_refused_with_valid_json(client: TestClient) -> None:
    body = '{"optimizer": {"type": "sgd", "lr": NaN}, "epochs": Infinity}'
    response = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "NaN" not in response.text and "Infinity" not in response.text
    assert {tuple(e["loc"][-1:]) for e in response.json()["detail"]} >= {("lr",), ("epochs",)}


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/jobs", content="{", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"]


def test_defaults_are_filled_in(client: TestClient) -> None:
    job = client.post("/jobs", json={}).json()
    spec = job["spec"]
    assert spec["model"] == {
        "type": "mlp",
        "hidden": [128],
        "activation": "relu",
        "bias": True,
        "init": "default",
    }
    assert spec["loss"] == "cross_entropy"
    assert spec["data"] == {"type": "digits"}
    assert spec["optimizer"]["type"] == "adam" and spec["optimizer"]["betas"] == [0.9, 0.999]
    assert spec["batch_size"] == 64 and spec["epochs"] == 20 and spec["validation_split"] == 0.2
    # 1797 digits, 359 held out: 1438 rows in batches of 64 is 23 steps an epoch
    assert job["progress"] == {"step": 0, "total_steps": 460, "epoch": 0, "total_epochs": 20}


@pytest.mark.parametrize(
    ("model", "data", "loss"),
    [
        ({"type": "linear"}, {"type": "linear"}, "mse"),
        ({"type": "logistic"}, {"type": "classification", "kind": "moons"}, "bce"),
        ({"type": "softmax"}, {"type": "digits"}, "cross_entropy"),
        ({"type": "mlp"}, {"type": "digits"}, "cross_entropy"),
        ({"type": "mlp"}, {"type": "linear"}, "mse"),
        ({"type": "mlp"}, INLINE, "cross_entropy"),
        ({"type": "mlp"}, {**INLINE, "y": [0.5, 1.0, 2.0]}, "mse"),
    ],
)
def test_default_loss_follows_model_and_data(
    client: TestClient, model: dict[str, Any], data: dict[str, Any], loss: str
) -> None:
    response = client.post(
        "/jobs", json=fit_spec(model=model, data=data, optimizer={"type": "adam"})
    )
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["loss"] == loss


def test_cosine_t_max_defaults_to_epochs(client: TestClient) -> None:
    job = client.post("/jobs", json=fit_spec(epochs=7, schedule={"type": "cosine"})).json()
    assert job["spec"]["schedule"] == {"type": "cosine", "t_max": 7, "eta_min": 0.0}


def test_openapi_documents_every_variant(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    variants = {
        "models": ["LinearModel", "LogisticModel", "SoftmaxModel", "MLPModel"],
        "data": ["LinearData", "ClassificationData", "DigitsData", "InlineData"],
        "optimizers": ["SGD", "Momentum", "Adagrad", "RMSprop", "Adam", "AdamW"]
        + ["ISTA", "FISTA", "CoordinateDescent", "ADMM"],
        "schedules": ["StepSchedule", "ExponentialSchedule", "CosineSchedule"],
        "objectives": ["Quadratic", "Rosenbrock", "Beale", "Himmelblau", "Booth", "Saddle"],
        "tasks": ["FitSpec", "MinimizeSpec"],
    }
    for names in variants.values():
        for name in names:
            assert schemas[name]["examples"], f"{name} has no example in /docs"
    assert "examples" in schemas["FitSpec"]
    mapping = schemas["FitSpec"]["properties"]["optimizer"]["discriminator"]["mapping"]
    assert set(mapping) == {
        "sgd",
        "momentum",
        "adagrad",
        "rmsprop",
        "adam",
        "adamw",
        "ista",
        "fista",
        "coordinate_descent",
        "admm",
    }
