"""The training loop against independent references: closed forms, numpy, torch's own parts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from service.spec import FitSpec
from worker.training import data as data_sources
from worker.training import models
from worker.training.errors import Diverged, InputOverflow, Interrupted, TimedOut
from worker.training.fit import train
from worker.training.recorder import Chunk, MemoryRecorder
from worker.training.skeleton import RunOptions

# --- helpers ---------------------------------------------------------------------------------


def _spec(**overrides: Any) -> FitSpec:
    """A small linear-regression spec on the CPU; keyword overrides replace top-level fields."""
    spec: dict[str, Any] = {
        "model": {"type": "linear"},
        "data": {"type": "linear", "n_samples": 64, "weights": [2.0], "x_range": [-1.0, 1.0]},
        "optimizer": {"type": "sgd", "lr": 0.1},
        "batch_size": 16,
        "epochs": 3,
        "device": "cpu",
    }
    spec.update(overrides)
    return FitSpec.model_validate(spec)


def _train(spec: FitSpec, **options: Any) -> tuple[dict[str, Any], MemoryRecorder]:
    recorder = MemoryRecorder()
    result = train(spec, recorder, device="cpu", options=RunOptions(**options))
    return result.as_dict(), recorder


def _values(recorder: MemoryRecorder, name: str) -> list[float]:
    values = recorder.series[name][1]
    assert all(v is not None for v in values), name
    return [float(v) for v in values if v is not None]


def _steps(recorder: MemoryRecorder, name: str) -> list[int]:
    return recorder.series[name][0]


def _regression(
    n: int, weights: list[float], bias: float, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, len(weights)))
    y = x @ np.array(weights) + bias + rng.normal(0.0, noise, size=n)
    return x, y


def _inline(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return {"type": "inline", "x": x.tolist(), "y": [float(v) for v in y]}


def _full_batch(x: np.ndarray, y: np.ndarray, **overrides: Any) -> FitSpec:
    """Batch gradient descent in float64 over all of inline (x, y), nothing held out."""
    spec: dict[str, Any] = {
        "model": {"type": "linear", "init": "zeros"},
        "data": _inline(x, y),
        "batch_size": None,
        "validation_split": 0.0,
        "dtype": "float64",
    }
    spec.update(overrides)
    return _spec(**spec)


def _design(x: np.ndarray, bias: bool) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) if bias else x


def _gd_lr(a: np.ndarray) -> tuple[float, int]:
    """1/L for mse on design a, and the steps that shrink the error by 1e-14 at that rate."""
    eigenvalues = np.linalg.eigvalsh(2.0 * a.T @ a / len(a))
    rate = 1.0 - eigenvalues[0] / eigenvalues[-1]
    return 1.0 / eigenvalues[-1], math.ceil(math.log(1e-14) / math.log(rate))


def _params(recorder: MemoryRecorder) -> dict[str, np.ndarray]:
    assert recorder.parameters is not None
    return {k: np.asarray(v, dtype=np.float64) for k, v in recorder.parameters.items()}


# --- 1. closed-form least squares ---------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_batch_gd_reaches_the_least_squares_solution(bias: bool) -> None:
    x, y = _regression(50, [1.5, -2.0, 0.5], bias=0.7, noise=0.1, seed=11)
    a = _design(x, bias)
    lr, epochs = _gd_lr(a)
    assert epochs <= 2000  # the data are well conditioned, so the test stays fast
    spec = _full_batch(
        x,
        y,
        model={"type": "linear", "init": "zeros", "bias": bias},
        optimizer={"type": "sgd", "lr": lr},
        epochs=epochs,
    )
    result, recorder = _train(spec)

    solution, *_ = np.linalg.lstsq(a, y, rcond=None)
    params = _params(recorder)
    assert params["weight"].shape == (1, 3)
    np.testing.assert_allclose(params["weight"][0], solution[:3], rtol=0, atol=1e-9)
    if bias:
        np.testing.assert_allclose(params["bias"], solution[3:], rtol=0, atol=1e-9)
    else:
        assert "bias" not in params
    least = float(np.mean((a @ solution - y) ** 2))
    assert result["final_loss"] == pytest.approx(least, rel=1e-9)
    assert result["metrics"]["train_loss"] == pytest.approx(least, rel=1e-9)
    assert result["steps"] == epochs


def test_gd_with_l2_penalty_reaches_ridge_with_an_unpenalised_bias() -> None:
    # minimise mean((x w + b - y)^2) + c*|w|^2: (A^T A / n + c D) theta = A^T y / n, D = diag(1,1,0)
    c = 0.3
    x, y = _regression(40, [2.0, -1.0], bias=3.0, noise=0.2, seed=5)
    a = _design(x, bias=True)
    d = np.diag([1.0, 1.0, 0.0])
    solution = np.linalg.solve(a.T @ a / len(a) + c * d, a.T @ y / len(a))
    eigenvalues = np.linalg.eigvalsh(2.0 * (a.T @ a / len(a) + c * d))
    lr = 1.0 / eigenvalues[-1]
    epochs = math.ceil(math.log(1e-14) / math.log(1.0 - eigenvalues[0] / eigenvalues[-1]))
    assert epochs <= 2000
    spec = _full_batch(x, y, optimizer={"type": "sgd", "lr": lr}, epochs=epochs, penalty={"l2": c})
    result, recorder = _train(spec)
    params = _params(recorder)
    np.testing.assert_allclose(params["weight"][0], solution[:2], atol=1e-9)
    np.testing.assert_allclose(params["bias"], solution[2:], atol=1e-9)
    objective = float(np.mean((a @ solution - y) ** 2) + c * np.sum(solution[:2] ** 2))
    assert result["final_loss"] == pytest.approx(objective, rel=1e-9)
    # the bias stays near 3: a penalised bias would be pulled towards 0
    assert params["bias"][0] == pytest.approx(solution[2], abs=1e-9)


# --- 6. curve semantics ----------------------------------------------------------------------


def _gd_by_hand(
    a: np.ndarray, y: np.ndarray, lr: float, steps: int, l2: float = 0.0, n_weights: int = 0
) -> tuple[list[float], np.ndarray]:
    """Batch GD on mean((a theta - y)^2) + l2*|theta[:n_weights]|^2 from zero: losses, theta."""
    theta = np.zeros(a.shape[1])
    mask = np.zeros(a.shape[1])
    mask[:n_weights] = 1.0
    losses = []
    for _ in range(steps):
        residual = a @ theta - y
        losses.append(float(np.mean(residual**2) + l2 * np.sum((mask * theta) ** 2)))
        theta = theta - lr * (2.0 * a.T @ residual / len(a) + 2.0 * l2 * mask * theta)
    return losses, theta


def test_step_one_is_the_loss_before_the_first_update() -> None:
    x, y = _regression(30, [1.0, -3.0], bias=0.5, noise=0.1, seed=2)
    spec = _full_batch(x, y, optimizer={"type": "sgd", "lr": 0.2}, epochs=5)
    _, recorder = _train(spec)
    loss = _values(recorder, "loss")
    assert loss[0] == pytest.approx(float(np.mean(y**2)), rel=1e-12)


@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_batch_gd_loss_curve_matches_numpy_step_for_step(l2: float) -> None:
    x, y = _regression(30, [1.0, -3.0], bias=0.5, noise=0.1, seed=2)
    spec = _full_batch(x, y, optimizer={"type": "sgd", "lr": 0.2}, epochs=25, penalty={"l2": l2})
    _, recorder = _train(spec)
    expected, theta = _gd_by_hand(_design(x, True), y, lr=0.2, steps=25, l2=l2, n_weights=2)
    assert _steps(recorder, "loss") == list(range(1, 26))
    np.testing.assert_allclose(_values(recorder, "loss"), expected, rtol=1e-12, atol=1e-14)
    params = _params(recorder)
    np.testing.assert_allclose(params["weight"][0], theta[:2], rtol=1e-12)
    np.testing.assert_allclose(params["bias"], theta[2:], rtol=1e-12)


def test_mini_batch_losses_and_epoch_metrics_match_numpy() -> None:
    """Without shuffling, step k's loss is the k-th batch's before its update, last batch short."""
    x, y = _regression(50, [0.5, 2.0], bias=-1.0, noise=0.3, seed=8)
    lr, batch, epochs = 0.3, 16, 3
    spec = _spec(
        model={"type": "linear", "init": "zeros"},
        data=_inline(x, y),
        optimizer={"type": "sgd", "lr": lr},
        batch_size=batch,
        epochs=epochs,
        shuffle=False,
        validation_split=0.2,
        dtype="float64",
    )
    _, recorder = _train(spec)

    # which rows train and which are held out: the split itself is tested in test_data_models
    split = data_sources.load(spec)
    a, t = _design(split.x_train, True), split.y_train[:, 0]
    a_val, t_val = _design(split.x_val, True), split.y_val[:, 0]
    assert len(a) == 40 and len(a_val) == 10
    theta = np.zeros(3)
    losses, train_losses, val_losses = [], [], []
    for _ in range(epochs):
        for start in range(0, len(a), batch):
            ab, tb = a[start : start + batch], t[start : start + batch]
            residual = ab @ theta - tb
            losses.append(float(np.mean(residual**2)))
            theta = theta - lr * 2.0 * ab.T @ residual / len(ab)
        train_losses.append(float(np.mean((a @ theta - t) ** 2)))
        val_losses.append(float(np.mean((a_val @ theta - t_val) ** 2)))

    assert _steps(recorder, "loss") == list(range(1, 10))
    np.testing.assert_allclose(_values(recorder, "loss"), losses, rtol=1e-12)
    assert _steps(recorder, "train_loss") == _steps(recorder, "val_loss") == [3, 6, 9]
    np.testing.assert_allclose(_values(recorder, "train_loss"), train_losses, rtol=1e-12)
    np.testing.assert_allclose(_values(recorder, "val_loss"), val_losses, rtol=1e-12)


@pytest.mark.parametrize(
    "n,split,batch,epochs",
    [
        (50, 0.2, 16, 4),
        (64, 0.0, 16, 3),
        (37, 0.3, 5, 2),
        (20, 0.0, None, 6),
        (20, 0.5, 50, 3),
        (30, 0.0, 1, 2),
    ],
)
def test_steps_run_one_to_total_and_epoch_series_end_epochs(
    n: int, split: float, batch: int | None, epochs: int
) -> None:
    spec = _spec(
        data={"type": "linear", "n_samples": n, "x_range": [-1.0, 1.0]},
        batch_size=batch,
        epochs=epochs,
        validation_split=split,
    )
    result, recorder = _train(spec, flush_seconds=0.0)
    n_train = n - math.floor(n * split)
    per_epoch = 1 if batch is None else math.ceil(n_train / batch)
    total = epochs * per_epoch
    assert result["steps"] == total
    assert _steps(recorder, "loss") == list(range(1, total + 1))
    ends = [per_epoch * e for e in range(1, epochs + 1)]
    assert _steps(recorder, "train_loss") == ends
    assert _steps(recorder, "lr") == ends
    assert _values(recorder, "lr") == [0.1] * epochs
    if split and math.floor(n * split):
        assert _steps(recorder, "val_loss") == ends
    else:
        assert "val_loss" not in recorder.series
    assert "accuracy" not in recorder.series and "val_accuracy" not in recorder.series
    loss = _values(recorder, "loss")
    assert result["final_loss"] == loss[-1]
    assert result["best_loss"] == min(loss)
    assert result["metrics"]["train_loss"] == _values(recorder, "train_loss")[-1]


def test_classifier_epoch_series_include_accuracies() -> None:
    spec = _spec(
        model={"type": "softmax"},
        data={"type": "classification", "kind": "blobs", "n_samples": 60, "n_classes": 3},
        batch_size=10,
        epochs=2,
        validation_split=0.25,
    )
    _, recorder = _train(spec)
    for name in ("train_loss", "val_loss", "accuracy", "val_accuracy", "lr"):
        assert _steps(recorder, name) == [5, 10], name


class _Chunks(MemoryRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.kept: list[Chunk] = []

    def record(self, chunk: Chunk) -> None:
        super().record(chunk)
        self.kept.append(chunk)


@pytest.mark.parametrize("flush_seconds", [0.0, 0.2])
def test_every_point_of_a_step_comes_in_one_chunk(flush_seconds: float) -> None:
    recorder = _Chunks()
    spec = _spec(batch_size=16, epochs=4, validation_split=0.25)  # 48 rows: 3 steps an epoch
    train(spec, recorder, options=RunOptions(flush_seconds=flush_seconds))
    chunk_of: dict[int, int] = {}
    for index, chunk in enumerate(recorder.kept):
        for name, (steps, _) in chunk.series.items():
            for step in steps:
                assert chunk_of.setdefault(step, index) == index, (name, step)
        # a chunk without points (the final parameters alone) is at the last step so far
        assert chunk.step == max(chunk_of, default=0)
        assert chunk.epoch == sum(s % 3 == 0 for s in chunk_of)
    assert sorted(chunk_of) == list(range(1, 13))
    if flush_seconds == 0.0:
        # one step a chunk: the loss alone mid-epoch, with the epoch's metrics at its end
        assert [sorted(c.series) for c in recorder.kept[:3]] == [
            ["loss"],
            ["loss"],
            ["loss", "lr", "train_loss", "val_loss"],
        ]
    assert recorder.kept[-1].parameters is not None


# --- 7. the penalty -----------------------------------------------------------------------


@pytest.mark.parametrize("l1,l2", [(0.0, 0.0), (0.7, 0.0), (0.0, 0.4), (0.7, 0.4)])
def test_step_one_loss_adds_the_penalty_of_the_initial_weights(l1: float, l2: float) -> None:
    x, y = _regression(25, [1.0, 2.0, -1.0], bias=2.0, noise=0.1, seed=4)
    seed = 9
    spec = _full_batch(
        x, y, model={"type": "linear"}, seed=seed, epochs=1, penalty={"l1": l1, "l2": l2}
    )
    _, recorder = _train(spec)
    # torch's own default initialisation of a 3 -> 1 linear layer from the run's seed
    torch.manual_seed(seed)
    initial = torch.nn.Linear(3, 1).double()
    w = initial.weight.detach().numpy()
    b = initial.bias.detach().numpy()
    assert abs(b[0]) > 1e-3  # a bias that would show if it were penalised
    data_loss = float(np.mean((x @ w.T + b - y[:, None]) ** 2))
    expected = data_loss + l1 * np.abs(w).sum() + l2 * np.square(w).sum()
    assert _values(recorder, "loss")[0] == pytest.approx(expected, rel=1e-12)


def test_mlp_penalty_covers_every_layers_weights_and_no_bias() -> None:
    x, y = _regression(20, [1.0, -1.0], bias=0.0, noise=0.1, seed=6)
    seed, l1, l2 = 3, 0.2, 0.1
    spec = _full_batch(
        x,
        y,
        model={"type": "mlp", "hidden": [4], "activation": "tanh"},
        seed=seed,
        epochs=1,
        penalty={"l1": l1, "l2": l2},
    )
    _, recorder = _train(spec)
    torch.manual_seed(seed)
    first, second = torch.nn.Linear(2, 4).double(), torch.nn.Linear(4, 1).double()
    w1, b1 = first.weight.detach().numpy(), first.bias.detach().numpy()
    w2, b2 = second.weight.detach().numpy(), second.bias.detach().numpy()
    out = np.tanh(x @ w1.T + b1) @ w2.T + b2
    expected = float(np.mean((out[:, 0] - y) ** 2))
    for w in (w1, w2):
        expected += l1 * np.abs(w).sum() + l2 * np.square(w).sum()
    assert _values(recorder, "loss")[0] == pytest.approx(expected, rel=1e-12)


# --- 3. every optimizer lowers a convex loss ---------------------------------------------


@pytest.mark.parametrize(
    "optimizer",
    [
        pytest.param({"type": "sgd", "lr": 0.1}, id="sgd"),
        pytest.param({"type": "sgd", "lr": 0.05, "momentum": 0.9}, id="sgd-momentum"),
        pytest.param({"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True}, id="nesterov"),
        pytest.param({"type": "momentum", "lr": 0.1, "beta": 0.9}, id="momentum"),
        pytest.param({"type": "adagrad", "lr": 0.5}, id="adagrad"),
        pytest.param({"type": "rmsprop", "lr": 0.02}, id="rmsprop"),
        pytest.param({"type": "adam", "lr": 0.1}, id="adam"),
        pytest.param({"type": "adamw", "lr": 0.1}, id="adamw"),
    ],
)
def test_every_optimizer_lowers_the_loss_of_linear_regression(optimizer: dict[str, Any]) -> None:
    spec = _spec(
        data={
            "type": "linear",
            "n_samples": 200,
            "n_features": 3,
            "weights": [2.0, -3.0, 1.0],
            "bias": 0.5,
            "noise": 0.1,
            "x_range": [-1.0, 1.0],
        },
        optimizer=optimizer,
        batch_size=20,
        epochs=15,
        validation_split=0.0,
    )
    _, recorder = _train(spec)
    first = _values(recorder, "loss")[0]
    final = _values(recorder, "train_loss")[-1]
    assert first > 1.0
    # the noise floor is 0.01; start from several units above it
    assert final < 0.05 * first
    assert final < 0.05


# --- 4. classifiers on separable data -------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,threshold",
    [
        pytest.param(
            {
                "model": {"type": "logistic"},
                "data": {
                    "type": "classification",
                    "kind": "blobs",
                    "n_samples": 200,
                    "n_classes": 2,
                    "noise": 0.5,
                },
                "optimizer": {"type": "adam", "lr": 0.1},
                "epochs": 5,
            },
            0.97,
            id="logistic-blobs",
        ),
        pytest.param(
            {
                "model": {"type": "softmax"},
                "data": {
                    "type": "classification",
                    "kind": "blobs",
                    "n_samples": 300,
                    "n_classes": 3,
                    "noise": 0.5,
                },
                "optimizer": {"type": "adam", "lr": 0.1},
                "epochs": 5,
            },
            0.97,
            id="softmax-blobs",
        ),
        pytest.param(
            {
                "model": {"type": "mlp", "hidden": [32], "activation": "tanh"},
                "data": {"type": "classification", "kind": "moons", "n_samples": 400, "noise": 0.1},
                "optimizer": {"type": "adam", "lr": 0.03},
                "epochs": 20,
            },
            0.95,
            id="mlp-moons",
        ),
        pytest.param(
            {
                "model": {"type": "mlp", "hidden": [16], "activation": "tanh"},
                "data": {"type": "classification", "kind": "xor", "n_samples": 400, "noise": 0.05},
                "optimizer": {"type": "adam", "lr": 0.03},
                "epochs": 30,
            },
            0.9,
            id="mlp-xor",
        ),
        pytest.param(
            {
                "model": {"type": "mlp", "hidden": [64]},
                "data": {"type": "digits"},
                "optimizer": {"type": "adam", "lr": 0.01},
                "epochs": 5,
                "batch_size": 64,
            },
            0.9,
            id="mlp-digits",
        ),
    ],
)
def test_classifiers_reach_their_accuracy(overrides: dict[str, Any], threshold: float) -> None:
    spec = _spec(**{"batch_size": 32, "validation_split": 0.2, **overrides})
    result, recorder = _train(spec)
    assert result["metrics"]["val_accuracy"] >= threshold
    assert _values(recorder, "accuracy")[-1] >= threshold
    # better than the start
    assert _values(recorder, "train_loss")[-1] < 0.5 * _values(recorder, "loss")[0]


@pytest.mark.parametrize("model,n_classes", [("logistic", 2), ("softmax", 3)])
def test_accuracy_is_the_share_of_right_predictions_of_the_final_model(
    model: str, n_classes: int
) -> None:
    spec = _spec(
        model={"type": model},
        data={
            "type": "classification",
            "kind": "blobs",
            "n_samples": 120,
            "n_classes": n_classes,
            "noise": 3.0,
        },
        optimizer={"type": "sgd", "lr": 0.05},
        batch_size=None,
        epochs=3,
        validation_split=0.0,
        dtype="float64",
    )
    result, recorder = _train(spec)
    params = _params(recorder)
    x, y = data_sources.make(spec.data, seed=spec.seed)
    logits = x @ params["weight"].T + params["bias"]
    if model == "logistic":
        assert params["weight"].shape == (1, 2)
        p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        predicted = (p > 0.5).astype(int)
        loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    else:
        assert params["weight"].shape == (n_classes, 2)
        predicted = logits.argmax(axis=1)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -np.mean(log_p[np.arange(len(y)), y])
    accuracy = float(np.mean(predicted == y))
    # noisy blobs: neither all right nor all wrong, so the comparison has teeth
    assert 0.3 < accuracy < 1.0
    assert result["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result["metrics"]["train_loss"] == pytest.approx(loss, rel=1e-10)


# --- 5. reproducibility -------------------------------------------------------------------


def _mlp_spec(seed: int) -> FitSpec:
    return _spec(
        model={"type": "mlp", "hidden": [8], "activation": "tanh"},
        data={"type": "classification", "kind": "moons", "n_samples": 100},
        optimizer={"type": "adam", "lr": 0.01},
        batch_size=10,
        epochs=3,
        seed=seed,
    )


def test_same_spec_and_seed_give_the_same_curve() -> None:
    _, first = _train(_mlp_spec(seed=4))
    _, second = _train(_mlp_spec(seed=4), flush_seconds=0.0)
    assert len(first.series["loss"][1]) == 24
    assert first.series == second.series
    assert first.parameters == second.parameters


def test_a_different_seed_gives_a_different_curve() -> None:
    _, first = _train(_mlp_spec(seed=4))
    _, other = _train(_mlp_spec(seed=5))
    assert _steps(first, "loss") == _steps(other, "loss")
    assert _values(first, "loss") != _values(other, "loss")
    assert first.parameters != other.parameters


def test_the_seed_alone_changes_the_batch_order() -> None:
    # zeros init and inline data: only the shuffle and the split can differ between seeds
    x, y = _regression(40, [1.0], bias=0.0, noise=0.5, seed=1)
    base = {
        "model": {"type": "linear", "init": "zeros"},
        "data": _inline(x, y),
        "batch_size": 8,
        "validation_split": 0.0,
        "dtype": "float64",
    }
    _, first = _train(_spec(**base, seed=0))
    _, other = _train(_spec(**base, seed=1))
    assert _values(first, "loss")[0] != _values(other, "loss")[0]


# --- 8. schedules ------------------------------------------------------------------------


def _torch_rates(scheduler_class: Any, lr: float, epochs: int, **kwargs: Any) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = scheduler_class(optimizer, **kwargs)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    "schedule,scheduler_class,kwargs",
    [
        (
            {"type": "step", "step_size": 2, "gamma": 0.5},
            torch.optim.lr_scheduler.StepLR,
            {"step_size": 2, "gamma": 0.5},
        ),
        (
            {"type": "exponential", "gamma": 0.8},
            torch.optim.lr_scheduler.ExponentialLR,
            {"gamma": 0.8},
        ),
        (
            {"type": "cosine", "t_max": 4, "eta_min": 0.01},
            torch.optim.lr_scheduler.CosineAnnealingLR,
            {"T_max": 4, "eta_min": 0.01},
        ),
        ({"type": "cosine"}, torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": 7}),
    ],
)
def test_schedules_give_torchs_rates_per_epoch(
    schedule: dict[str, Any], scheduler_class: Any, kwargs: dict[str, Any]
) -> None:
    epochs = 7
    spec = _spec(schedule=schedule, epochs=epochs, optimizer={"type": "sgd", "lr": 0.2})
    _, recorder = _train(spec)
    expected = _torch_rates(scheduler_class, 0.2, epochs, **kwargs)
    assert _steps(recorder, "lr") == [4 * e for e in range(1, epochs + 1)]
    assert _values(recorder, "lr") == pytest.approx(expected, rel=1e-12)
    assert len(set(expected)) > 2  # the schedule really changes the rate


def test_cosine_without_t_max_anneals_over_the_epochs() -> None:
    epochs, lr = 8, 0.4
    spec = _spec(schedule={"type": "cosine"}, epochs=epochs, optimizer={"type": "sgd", "lr": lr})
    _, recorder = _train(spec)
    closed_form = [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    assert _values(recorder, "lr") == pytest.approx(closed_form, rel=1e-9, abs=1e-15)


def test_the_schedule_changes_the_updates() -> None:
    # exponential decay of the rate: batch GD on a 1-D problem, checked by hand
    x = np.array([[1.0], [2.0], [3.0]])
    y = np.array([2.0, 4.0, 6.0])
    spec = _full_batch(
        x,
        y,
        model={"type": "linear", "init": "zeros", "bias": False},
        optimizer={"type": "sgd", "lr": 0.05},
        schedule={"type": "exponential", "gamma": 0.5},
        epochs=4,
    )
    _, recorder = _train(spec)
    w, losses = 0.0, []
    for epoch in range(4):
        residual = x[:, 0] * w - y
        losses.append(float(np.mean(residual**2)))
        w -= 0.05 * 0.5**epoch * 2.0 * float(np.mean(residual * x[:, 0]))
    np.testing.assert_allclose(_values(recorder, "loss"), losses, rtol=1e-12)
    assert _params(recorder)["weight"][0, 0] == pytest.approx(w, rel=1e-12)


# --- 9. divergence ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flush_seconds", [0.2, 0.0])
@pytest.mark.parametrize("batch_size", [None, 8])
def test_a_huge_learning_rate_diverges_keeping_the_finite_steps(
    dtype: str, flush_seconds: float, batch_size: int | None
) -> None:
    spec = _spec(
        data={"type": "linear", "n_samples": 40, "weights": [2.0], "x_range": [0.0, 10.0]},
        optimizer={"type": "sgd", "lr": 50.0},
        batch_size=batch_size,
        epochs=200,
        dtype=dtype,
    )
    recorder = MemoryRecorder()
    with pytest.raises(Diverged) as caught:
        train(spec, recorder, options=RunOptions(flush_seconds=flush_seconds))
    step = caught.value.step
    assert 1 < step < spec.total_steps
    assert f"at step {step}" in str(caught.value)
    assert _steps(recorder, "loss") == list(range(1, step))
    assert all(math.isfinite(v) for v in _values(recorder, "loss"))
    for name, (steps, values) in recorder.series.items():
        assert all(s < step for s in steps), name
        assert all(v is None or math.isfinite(v) for v in values), name


def test_divergence_reports_the_first_non_finite_step() -> None:
    # 1-D batch GD w <- w - lr*2*mean(x(xw - y)) from 0 blows up by a known factor each step
    x = np.array([[1.0], [3.0]])
    y = np.array([1.0, 3.0])
    lr = 1e3
    spec = _full_batch(
        x,
        y,
        model={"type": "linear", "init": "zeros", "bias": False},
        optimizer={"type": "sgd", "lr": lr},
        epochs=500,
    )
    recorder = _Chunks()
    with pytest.raises(Diverged) as caught:
        train(spec, recorder)
    w, expected = 0.0, 0
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(1, 501):
            loss = float(np.mean((x[:, 0] * np.float64(w) - y) ** 2))
            if not math.isfinite(loss):
                expected = k
                break
            w = float(np.float64(w) - lr * 2.0 * np.mean(x[:, 0] * (x[:, 0] * w - y)))
    assert expected > 10
    assert caught.value.step == expected
    assert _steps(recorder, "loss") == list(range(1, expected))
    # one step an epoch: the epochs finished are those whose end was recorded
    assert _steps(recorder, "train_loss") == list(range(1, expected))
    assert recorder.kept[-1].epoch == expected - 1
    assert recorder.kept[-1].step == expected - 1


# --- 12. interruption and time limit ------------------------------------------------------


def test_a_recorder_asking_to_stop_before_the_first_step_stops_it_there() -> None:
    # making large data takes a while: a cancel that came meanwhile is heard before any step
    recorder = MemoryRecorder()
    recorder.stop = True
    with pytest.raises(Interrupted) as caught:
        train(_spec(epochs=50), recorder, options=RunOptions(flush_seconds=0.0))
    assert caught.value.step == 0
    assert "loss" not in recorder.series


def test_a_stop_asked_inside_a_long_step_ends_it_before_its_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a step past its flush time (flush_seconds 0: every step) hears a stop between its
    # forward and its backward: step 3 asks during its forward pass and records nothing
    recorder = MemoryRecorder()
    forwards = 0

    def build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = real_build(*args, **kwargs)

        def count(*_: object) -> None:
            nonlocal forwards
            forwards += 1
            recorder.stop = recorder.stop or forwards == 3

        model.register_forward_hook(count)
        return model

    real_build = models.build
    monkeypatch.setattr(models, "build", build)
    with pytest.raises(Interrupted) as caught:
        train(_spec(epochs=50), recorder, options=RunOptions(flush_seconds=0.0))
    assert caught.value.step == 2
    assert _steps(recorder, "loss") == [1, 2]


class _StopAfter(MemoryRecorder):
    def __init__(self, chunks: int) -> None:
        super().__init__()
        self.limit = chunks

    def record(self, chunk: Chunk) -> None:
        super().record(chunk)
        self.stop = self.chunks >= self.limit


def test_a_stop_mid_run_keeps_whole_steps_up_to_it() -> None:
    recorder = _StopAfter(6)
    with pytest.raises(Interrupted) as caught:
        train(_spec(epochs=50), recorder, options=RunOptions(flush_seconds=0.0))
    step = caught.value.step
    assert step == 6
    assert _steps(recorder, "loss") == list(range(1, step + 1))
    assert _steps(recorder, "train_loss") == [4]


def test_a_run_past_its_time_limit_times_out() -> None:
    recorder = MemoryRecorder()
    with pytest.raises(TimedOut) as caught:
        train(
            _spec(epochs=10_000, batch_size=None),
            recorder,
            options=RunOptions(flush_seconds=0.0, time_limit=0.05),
        )
    assert _steps(recorder, "loss") == list(range(1, caught.value.step + 1))
    assert caught.value.step < 10_000


# --- 10. parameters reported by the run ------------------------------------------------------


@pytest.mark.parametrize(
    "model,data,expected",
    [
        ({"type": "linear"}, {"type": "linear", "n_features": 3}, {"weight": [1, 3], "bias": [1]}),
        (
            {"type": "logistic", "bias": False},
            {"type": "classification", "kind": "moons"},
            {"weight": [1, 2]},
        ),
        (
            {"type": "softmax"},
            {"type": "classification", "kind": "blobs", "n_classes": 4, "n_features": 5},
            {"weight": [4, 5], "bias": [4]},
        ),
        (
            {"type": "mlp", "hidden": [6, 3], "activation": "sigmoid"},
            {"type": "digits"},
            {
                "layers.0.weight": [6, 64],
                "layers.0.bias": [6],
                "layers.1.weight": [3, 6],
                "layers.1.bias": [3],
                "layers.2.weight": [10, 3],
                "layers.2.bias": [10],
            },
        ),
    ],
)
def test_final_parameters_have_state_dict_names_and_shapes(
    model: dict[str, Any], data: dict[str, Any], expected: dict[str, list[int]]
) -> None:
    spec = _spec(model=model, data=data, epochs=1, batch_size=None)
    _, recorder = _train(spec)
    params = _params(recorder)
    assert {k: list(v.shape) for k, v in params.items()} == expected


# --- inputs that overflow the run's dtype (issue 9, finding 5) ------------------------------


def _uploaded(x: np.ndarray, y: np.ndarray) -> data_sources.Dataset:
    """Arrays as an uploaded dataset gives them: any finite float64."""
    return data_sources.Dataset(x, y.reshape(-1, 1), x[:0], y[:0].reshape(0, 1), None)


def test_data_past_float32s_range_is_refused_as_such() -> None:
    x = np.array([[1.0], [1e300]])
    with pytest.raises(InputOverflow) as caught:
        train(_spec(dtype="float32"), MemoryRecorder(), data=_uploaded(x, np.ones(2)))
    message = str(caught.value)
    assert "data.x holds numbers beyond the range of float32" in message
    assert "float64" in message and "learning rate" not in message


def test_a_loss_that_overflows_before_any_update_blames_the_inputs() -> None:
    # 1e30 fits float32, its square does not: the first loss is infinite before any step
    x = np.array([[1e30], [2e30]])
    with pytest.raises(InputOverflow) as caught:
        train(_spec(dtype="float32"), MemoryRecorder(), data=_uploaded(x, np.ones(2)))
    message = str(caught.value)
    assert message.startswith("the loss is not finite at step 1, before any update")
    assert "overflow float32" in message and "learning rate" not in message
    # a loss that overflows after updates is the optimizer's doing, and says so
    with pytest.raises(Diverged) as later:
        train(_spec(optimizer={"type": "sgd", "lr": 1e6}), MemoryRecorder())
    assert "smaller learning rate" in str(later.value) and later.value.step > 1
