"""The seeds' algorithms as jobs: minimize paths, trajectories, manual gradients, the lasso.

References are computed here, independently: plain-Python loops of the update formulas,
closed-form gradients, scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from tests.conftest import fit_spec
from worker.claims import Worker

Path = list[float]


@pytest.fixture
def run(client: TestClient, settings: Settings) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Submit a spec, run it in an in-process worker, return the finished job."""
    worker = Worker(settings, device="cpu")

    def go(spec: dict[str, Any]) -> dict[str, Any]:
        response = client.post("/jobs", json=spec)
        assert response.status_code == 201, response.text
        assert worker.run_one()
        return client.get(f"/jobs/{response.json()['id']}").json()  # type: ignore[no-any-return]

    return go


def _minimize(
    optimizer: dict[str, Any],
    *,
    objective: dict[str, Any] | None = None,
    x0: list[float] | None = None,
    steps: int = 20,
) -> dict[str, Any]:
    return {
        "task": "minimize",
        "objective": objective or {"type": "quadratic"},
        "x0": x0 or [10.0],
        "optimizer": optimizer,
        "steps": steps,
        "device": "cpu",
    }


# --- the seeds' experiment: f(x) = x^2 from 10, lr 0.1, 20 steps, by hand -----------------


def _gd(x: float, lr: float, steps: int) -> Path:
    path = [x]
    for _ in range(steps):
        x = x - lr * 2 * x
        path.append(x)
    return path


def _momentum(x: float, lr: float, beta: float, steps: int) -> Path:
    path, v = [x], 0.0
    for _ in range(steps):
        v = beta * v + (1 - beta) * 2 * x
        x = x - lr * v
        path.append(x)
    return path


def _rmsprop(x: float, lr: float, beta: float, eps: float, steps: int) -> Path:
    path, s = [x], 0.0
    for _ in range(steps):
        g = 2 * x
        s = beta * s + (1 - beta) * g * g
        x = x - lr * g / (math.sqrt(s) + eps)
        path.append(x)
    return path


def _adam(x: float, lr: float, b1: float, b2: float, eps: float, steps: int) -> Path:
    path, m, v = [x], 0.0, 0.0
    for t in range(1, steps + 1):
        g = 2 * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        x = x - lr * m_hat / (math.sqrt(v_hat) + eps)
        path.append(x)
    return path


SEEDS_EXPERIMENT = [
    pytest.param({"type": "sgd", "lr": 0.1}, _gd(10.0, 0.1, 20), id="batch-gd"),
    pytest.param(
        {"type": "momentum", "lr": 0.1, "beta": 0.9}, _momentum(10.0, 0.1, 0.9, 20), id="momentum"
    ),
    pytest.param(
        {"type": "rmsprop", "lr": 0.1, "alpha": 0.9},
        _rmsprop(10.0, 0.1, 0.9, 1e-8, 20),
        id="rmsprop",
    ),
    pytest.param({"type": "adam", "lr": 0.1}, _adam(10.0, 0.1, 0.9, 0.999, 1e-8, 20), id="adam"),
]


@pytest.mark.parametrize(("optimizer", "expected"), SEEDS_EXPERIMENT)
def test_seeds_experiment_matches_the_formulas(
    client: TestClient,
    run: Callable[..., dict[str, Any]],
    optimizer: dict[str, Any],
    expected: Path,
) -> None:
    job = run(_minimize(optimizer))
    assert job["status"] == "succeeded", job["error"]
    trajectory = client.get(f"/jobs/{job['id']}/trajectory").json()
    assert trajectory["steps"] == list(range(21))
    got = [point[0] for point in trajectory["points"]]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    curve = client.get(f"/jobs/{job['id']}/curves", params={"names": "loss"}).json()
    assert curve["series"]["loss"]["steps"] == list(range(21))
    np.testing.assert_allclose(
        curve["series"]["loss"]["values"], [x * x for x in expected], rtol=1e-12, atol=0
    )
    params = client.get(f"/jobs/{job['id']}/parameters").json()
    assert params["step"] == 20
    np.testing.assert_allclose(params["parameters"]["x"], [expected[-1]], rtol=1e-12)
    assert job["result"]["final_loss"] == pytest.approx(expected[-1] ** 2, rel=1e-12)
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 20


# --- the objectives ------------------------------------------------------------------------


def _rosenbrock(x: float, y: float) -> float:
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _beale(x: float, y: float) -> float:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


OBJECTIVES = [
    ({"type": "rosenbrock"}, _rosenbrock, (1.0, 1.0)),
    ({"type": "beale"}, _beale, (3.0, 0.5)),
    ({"type": "himmelblau"}, lambda x, y: (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2, (3.0, 2.0)),
    ({"type": "booth"}, lambda x, y: (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2, (1.0, 3.0)),
    ({"type": "saddle"}, lambda x, y: x * x - y * y, (0.0, 0.0)),
]


@pytest.mark.parametrize(("objective", "f", "minimum"), OBJECTIVES, ids=lambda o: str(o))
def test_objectives_and_gradient_descent_paths(
    client: TestClient,
    run: Callable[..., dict[str, Any]],
    objective: dict[str, Any],
    f: Callable[[float, float], float],
    minimum: tuple[float, float],
) -> None:
    x0, lr, h = [0.5, 0.7], 1e-4, 1e-6
    job = run(_minimize({"type": "sgd", "lr": lr}, objective=objective, x0=x0, steps=3))
    assert job["status"] == "succeeded", job["error"]
    assert f(*minimum) == pytest.approx(0.0, abs=1e-12)
    # the first update, by a central finite difference of the formula written here
    gx = (f(x0[0] + h, x0[1]) - f(x0[0] - h, x0[1])) / (2 * h)
    gy = (f(x0[0], x0[1] + h) - f(x0[0], x0[1] - h)) / (2 * h)
    trajectory = client.get(f"/jobs/{job['id']}/trajectory").json()
    x1 = trajectory["points"][1]
    np.testing.assert_allclose(x1, [x0[0] - lr * gx, x0[1] - lr * gy], rtol=1e-8)
    loss = client.get(f"/jobs/{job['id']}/curves").json()["series"]["loss"]["values"]
    assert loss[0] == pytest.approx(f(*x0), rel=1e-12)
    assert loss[1] == pytest.approx(f(*x1), rel=1e-12)


def test_quadratic_scales_in_any_dimension(run: Callable[..., dict[str, Any]]) -> None:
    scales, x0, lr = [1.0, 2.0, 0.5, 4.0], [1.0, -2.0, 3.0, 0.5], 0.05
    job = run(
        _minimize(
            {"type": "sgd", "lr": lr},
            objective={"type": "quadratic", "scales": scales},
            x0=x0,
            steps=10,
        )
    )
    x = np.array(x0)
    for _ in range(10):
        x = x - lr * 2 * np.array(scales) * x
    np.testing.assert_allclose(job["result"]["x"], x, rtol=1e-12)
    assert job["spec"]["objective"]["scales"] == scales


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"])
def test_every_optimizer_descends_rosenbrock(run: Callable[..., dict[str, Any]], kind: str) -> None:
    lr = {"sgd": 1e-3, "momentum": 1e-3}.get(kind, 1e-2)
    job = run(
        _minimize(
            {"type": kind, "lr": lr}, objective={"type": "rosenbrock"}, x0=[-1.5, 2.0], steps=500
        )
    )
    assert job["status"] == "succeeded", job["error"]
    # plain gradient descent crawls along the valley: that is what the function shows
    assert job["result"]["final_loss"] < _rosenbrock(-1.5, 2.0) / 2


def test_saddle_diverges_with_the_step(
    run: Callable[..., dict[str, Any]], client: TestClient
) -> None:
    job = run(
        _minimize(
            {"type": "sgd", "lr": 0.5}, objective={"type": "saddle"}, x0=[1.0, 1e-3], steps=5000
        )
    )
    assert job["status"] == "failed" and job["error"]["type"] == "diverged"
    steps = client.get(f"/jobs/{job['id']}/curves").json()["series"]["loss"]["steps"]
    assert f"at step {steps[-1] + 1}" in job["error"]["message"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_minimize({"type": "sgd"}, objective={"type": "beale"}, x0=[1.0, 2.0, 3.0]), "2-D"),
        (
            _minimize(
                {"type": "sgd"}, objective={"type": "quadratic", "scales": [1.0]}, x0=[1.0, 2.0]
            ),
            "scales",
        ),
        (_minimize({"type": "ista", "lr": 0.1}), "ista"),
        ({**_minimize({"type": "sgd"}), "steps": 0}, "steps"),
        ({**_minimize({"type": "sgd"}), "epochs": 3}, "epochs"),
    ],
)
def test_bad_minimize_specs(client: TestClient, body: dict[str, Any], expected: str) -> None:
    response = client.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    assert expected in str(response.json()["detail"])


# --- trajectories of fit jobs --------------------------------------------------------------


def test_fit_trajectory_every_epoch_from_the_initial_values(
    client: TestClient, run: Callable[..., dict[str, Any]]
) -> None:
    # the seeds: y = 2x + noise, from w = 0, w printed as it converges to 2
    spec = fit_spec(
        model={"type": "linear", "bias": False, "init": "zeros"},
        data={"type": "linear", "n_samples": 100, "weights": [2.0], "noise": 0.1},
        optimizer={"type": "sgd", "lr": 0.001},
        batch_size=None,
        epochs=50,
        validation_split=0,
    )
    job = run(spec)
    trajectory = client.get(f"/jobs/{job['id']}/trajectory").json()
    assert trajectory["steps"] == list(range(51))
    assert trajectory["points"][0] == [0.0]
    final = client.get(f"/jobs/{job['id']}/parameters").json()["parameters"]["weight"]
    assert trajectory["points"][-1] == [final[0][0]]
    assert abs(final[0][0] - 2.0) < 0.05


def test_fit_trajectory_flattens_in_state_dict_order(
    client: TestClient, run: Callable[..., dict[str, Any]]
) -> None:
    spec = fit_spec(
        model={"type": "mlp", "hidden": [3]},
        data={"type": "linear", "n_samples": 40, "n_features": 2},
    )
    job = run(spec)
    trajectory = client.get(f"/jobs/{job['id']}/trajectory").json()
    params = client.get(f"/jobs/{job['id']}/parameters").json()["parameters"]
    flat = [
        v
        for name in ("layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias")
        for v in np.ravel(params[name]).tolist()
    ]
    assert trajectory["steps"] == [0, 2, 4, 6]  # 32 training rows in batches of 16, 3 epochs
    np.testing.assert_allclose(trajectory["points"][-1], flat, rtol=1e-6)


def test_a_large_models_trajectory_is_a_404_saying_why(
    client: TestClient, run: Callable[..., dict[str, Any]]
) -> None:
    job = run(
        fit_spec(
            model={"type": "mlp", "hidden": [64]},
            data={"type": "linear", "n_samples": 40, "n_features": 20},
        )
    )
    # 20*64 + 64 + 64 + 1 parameters: none kept, and the answer says why (once a 200 of
    # empty lists)
    response = client.get(f"/jobs/{job['id']}/trajectory")
    assert response.status_code == 404
    assert response.json()["detail"].startswith("no trajectory: the model has 1409 parameters")


# --- manual gradients ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {
            "model": {"type": "mlp", "hidden": [8, 4], "activation": "tanh"},
            "data": {"type": "classification", "kind": "blobs", "n_classes": 3},
        },
        {
            "model": {"type": "logistic"},
            "data": {"type": "classification", "kind": "moons"},
            "penalty": {"l1": 0.01, "l2": 0.01},
        },
        {"model": {"type": "mlp", "hidden": [5], "activation": "sigmoid"}, "penalty": {"l2": 0.1}},
    ],
)
def test_manual_gradients_job_matches_autograd(
    client: TestClient, run: Callable[..., dict[str, Any]], overrides: dict[str, Any]
) -> None:
    base = fit_spec(dtype="float64", optimizer={"type": "adam", "lr": 0.01}, **overrides)
    auto = run(base)
    by_hand = run({**base, "gradients": "manual"})
    assert by_hand["status"] == "succeeded", by_hand["error"]
    assert by_hand["result"]["gradient_check"]["max_relative_difference"] < 1e-10
    curves = [
        client.get(f"/jobs/{j['id']}/curves", params={"names": "loss"}).json()["series"]["loss"]
        for j in (auto, by_hand)
    ]
    np.testing.assert_allclose(curves[1]["values"], curves[0]["values"], rtol=1e-10)


# --- the lasso three ways, and FISTA, as jobs ------------------------------------------------


def _lasso_problem() -> tuple[np.ndarray, np.ndarray]:
    """Standardised, correlated features and a sparse truth (correlation makes FISTA's
    acceleration show)."""
    rng = np.random.default_rng(7)
    n, f = 120, 8
    shared = rng.normal(size=(n, 1))
    x = 0.6 * rng.normal(size=(n, f)) + 0.8 * shared
    x = (x - x.mean(0)) / x.std(0)
    w = np.array([2.5, 0.0, -1.5, 0.0, 0.0, 1.0, 0.0, 0.0])
    return x, x @ w + 0.7 + rng.normal(0, 0.3, n)


L1 = 0.3


def _lasso_spec(optimizer: dict[str, Any], steps: int) -> dict[str, Any]:
    x, y = _lasso_problem()
    return fit_spec(
        model={"type": "linear"},
        data={"type": "inline", "x": x.tolist(), "y": y.tolist()},
        optimizer=optimizer,
        penalty={"l1": L1},
        batch_size=None,
        epochs=steps,
        validation_split=0,
        dtype="float64",
    )


def _objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    return float(np.mean((y - x @ w - b) ** 2) + L1 * np.abs(w).sum())


@pytest.fixture(scope="module")
def sklearn_lasso() -> tuple[np.ndarray, float, float]:
    from sklearn.linear_model import Lasso

    x, y = _lasso_problem()
    ref = Lasso(alpha=L1 / 2, tol=1e-14, max_iter=1_000_000).fit(x, y)
    return ref.coef_, float(ref.intercept_), _objective(x, y, ref.coef_, float(ref.intercept_))


def _lr() -> float:
    x, _ = _lasso_problem()
    return float(len(x) / (2 * np.linalg.eigvalsh(x.T @ x).max()))


SOLVERS = [
    pytest.param({"type": "ista", "lr": None}, 400, True, id="ista"),
    pytest.param({"type": "fista", "lr": None}, 400, True, id="fista"),
    pytest.param({"type": "coordinate_descent"}, 60, True, id="coordinate_descent"),
    pytest.param({"type": "admm", "rho": 1.0}, 100, True, id="admm"),
]


@pytest.mark.parametrize(("optimizer", "steps", "exact_zeros"), SOLVERS)
def test_lasso_solvers_reach_sklearn(
    client: TestClient,
    run: Callable[..., dict[str, Any]],
    sklearn_lasso: tuple[np.ndarray, float, float],
    optimizer: dict[str, Any],
    steps: int,
    exact_zeros: bool,
) -> None:
    coef, intercept, best = sklearn_lasso
    if "lr" in optimizer:
        optimizer = {**optimizer, "lr": _lr()}
    job = run(_lasso_spec(optimizer, steps))
    assert job["status"] == "succeeded", job["error"]
    params = client.get(f"/jobs/{job['id']}/parameters").json()["parameters"]
    w, b = np.array(params["weight"][0]), params["bias"][0]
    np.testing.assert_allclose(w, coef, atol=1e-4)
    assert b == pytest.approx(intercept, abs=1e-4)
    if exact_zeros:
        assert [v == 0.0 for v in w] == [v == 0.0 for v in coef]
    assert 0 < (coef == 0).sum() < len(coef), "the problem should have zeros and non-zeros"
    # the curve reports the whole objective, l1 included
    assert job["result"]["final_loss"] == pytest.approx(best, abs=1e-6)


def _steps_to(values: list[float], target: float) -> int:
    return next(i + 1 for i, v in enumerate(values) if v <= target)


def test_fista_needs_fewer_steps_than_ista(
    client: TestClient, run: Callable[..., dict[str, Any]], sklearn_lasso: tuple[Any, Any, float]
) -> None:
    best = sklearn_lasso[2]
    counts = {}
    for kind in ("ista", "fista", "coordinate_descent", "admm"):
        optimizer = {"type": kind, "lr": _lr()} if kind in ("ista", "fista") else {"type": kind}
        job = run(_lasso_spec(optimizer, 400))
        loss = client.get(f"/jobs/{job['id']}/curves", params={"names": "loss"}).json()
        counts[kind] = _steps_to(loss["series"]["loss"]["values"], best + 1e-6)
    print(f"steps to 1e-6 of the optimal lasso objective: {counts}")
    assert counts["fista"] < counts["ista"]


def test_ista_without_l1_is_gradient_descent(
    client: TestClient, run: Callable[..., dict[str, Any]]
) -> None:
    spec = fit_spec(batch_size=None, dtype="float64", validation_split=0)
    plain = run({**spec, "optimizer": {"type": "sgd", "lr": 0.05}})
    ista = run({**spec, "optimizer": {"type": "ista", "lr": 0.05}})
    loss = [
        client.get(f"/jobs/{j['id']}/curves", params={"names": "loss"}).json()["series"]["loss"]
        for j in (plain, ista)
    ]
    assert loss[0] == loss[1]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"optimizer": {"type": "ista", "lr": 0.1}, "batch_size": 16}, "batch_size to null"),
        ({"optimizer": {"type": "fista", "lr": 0.1}, "batch_size": 1}, "batch_size to null"),
        (
            {
                "optimizer": {"type": "admm"},
                "batch_size": None,
                "model": {"type": "softmax"},
                "data": {"type": "digits"},
            },
            "needs model 'linear'",
        ),
        (
            {
                "optimizer": {"type": "coordinate_descent"},
                "batch_size": None,
                "model": {"type": "mlp"},
            },
            "needs model 'linear'",
        ),
        (
            {"optimizer": {"type": "admm"}, "batch_size": None, "gradients": "manual"},
            "uses no gradients",
        ),
        ({"optimizer": {"type": "admm", "rho": 0}, "batch_size": None}, "rho"),
    ],
)
def test_invalid_lasso_combinations(
    client: TestClient, overrides: dict[str, Any], expected: str
) -> None:
    response = client.post("/jobs", json=fit_spec(**overrides))
    assert response.status_code == 422, response.text
    assert expected in str(response.json()["detail"])


# --- uploaded datasets as job data ------------------------------------------------------------


def _upload(client: TestClient, text: str, **form: str) -> dict[str, Any]:
    files = {"file": ("data.csv", text.encode(), "text/csv")}
    response = client.post("/datasets", files=files, data=form)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_dataset_regression_job_fits_least_squares(
    client: TestClient, run: Callable[..., dict[str, Any]]
) -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(40, 2))
    y = x @ np.array([1.5, -0.5]) + 0.25 + rng.normal(0, 0.01, 40)
    rows = "\n".join(f"{a:.17g},{b:.17g},{t:.17g}" for (a, b), t in zip(x, y, strict=True))
    dataset = _upload(client, "a,b,price\n" + rows + "\n")
    assert dataset["integer_target"] is False
    job = run(
        fit_spec(
            model={"type": "linear"},
            data={"type": "dataset", "id": dataset["id"]},
            optimizer={"type": "coordinate_descent"},
            batch_size=None,
            epochs=200,
            validation_split=0,
            dtype="float64",
        )
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["loss"] == "mse"
    params = client.get(f"/jobs/{job['id']}/parameters").json()["parameters"]
    design = np.hstack([x, np.ones((40, 1))])
    expected = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose([*params["weight"][0], params["bias"][0]], expected, atol=1e-8)


def test_dataset_integer_target_is_class_labels(
    client: TestClient, run: Callable[..., dict[str, Any]]
) -> None:
    rng = np.random.default_rng(4)
    x = np.vstack([rng.normal(-2, 0.5, (30, 2)), rng.normal(2, 0.5, (30, 2))])
    labels = [0] * 30 + [1] * 30
    rows = "\n".join(f"{t},{a},{b}" for (a, b), t in zip(x, labels, strict=True))
    dataset = _upload(client, "label,u,v\n" + rows, target="label")
    assert dataset["integer_target"] is True and dataset["target"] == "label"
    job = run(
        fit_spec(
            model={"type": "mlp", "hidden": [4]},
            data={"type": "dataset", "id": dataset["id"]},
            optimizer={"type": "adam", "lr": 0.05},
            epochs=20,
        )
    )
    assert job["spec"]["loss"] == "cross_entropy"
    assert job["result"]["metrics"]["accuracy"] > 0.95
    forced = client.post(
        "/jobs",
        json=fit_spec(
            model={"type": "mlp"},
            data={"type": "dataset", "id": dataset["id"], "targets": "values"},
        ),
    )
    assert forced.json()["spec"]["loss"] == "mse"


def test_dataset_job_errors(client: TestClient) -> None:
    missing = client.post("/jobs", json=fit_spec(data={"type": "dataset", "id": "nope"}))
    assert missing.status_code == 422 and "no dataset 'nope'" in missing.text
    dataset = _upload(client, "x,y\n1,0.5\n2,1.5\n3,2.5\n")
    softmax = client.post(
        "/jobs",
        json=fit_spec(model={"type": "softmax"}, data={"type": "dataset", "id": dataset["id"]}),
    )
    assert softmax.status_code == 422 and "class labels" in softmax.text
    assert client.get("/jobs").json()["items"] == []
