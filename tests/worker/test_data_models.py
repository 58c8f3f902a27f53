"""Data sources (API.md 3.3) and models (3.1), checked against numpy and the spec's own rules."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from service.spec import FitSpec, LinearModel, LogisticModel, MLPModel, SoftmaxModel
from worker.training import data, models

# --- data -----------------------------------------------------------------------------------


def _fit(**overrides: Any) -> FitSpec:
    spec: dict[str, Any] = {
        "model": {"type": "linear"},
        "data": {"type": "linear", "n_samples": 50},
        "optimizer": {"type": "sgd", "lr": 0.01},
        "device": "cpu",
    }
    spec.update(overrides)
    return FitSpec.model_validate(spec)


def _make(data_spec: dict[str, Any], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    model = {"type": "mlp"} if data_spec["type"] in ("classification", "digits") else {}
    return data.make(_fit(data=data_spec, **({"model": model} if model else {})).data, seed=seed)


def test_linear_data_without_noise_is_the_line() -> None:
    x, y = _make(
        {
            "type": "linear",
            "n_samples": 200,
            "weights": [2.0],
            "bias": 1.0,
            "noise": 0.0,
            "x_range": [-3.0, 5.0],
        }
    )
    assert x.shape == (200, 1) and y.shape == (200,)
    np.testing.assert_allclose(y, 2.0 * x[:, 0] + 1.0, rtol=0, atol=1e-12)
    assert x.min() >= -3.0 and x.max() <= 5.0
    # spread over the range, not stuck in a corner of it
    assert x.min() < -2.0 and x.max() > 4.0


def test_linear_data_with_several_features() -> None:
    w = [0.5, -1.5, 3.0]
    x, y = _make(
        {
            "type": "linear",
            "n_samples": 30,
            "n_features": 3,
            "weights": w,
            "bias": -2.0,
            "noise": 0.0,
        }
    )
    assert x.shape == (30, 3)
    np.testing.assert_allclose(y, x @ np.array(w) - 2.0, atol=1e-12)


def test_uniform_noise_is_bounded_by_noise() -> None:
    spec = {
        "type": "linear",
        "n_samples": 2000,
        "weights": [1.0],
        "noise": 0.3,
        "noise_type": "uniform",
    }
    x, y = _make(spec)
    residual = y - x[:, 0]
    assert np.all(np.abs(residual) <= 0.3)
    # uniform on [-0.3, 0.3]: reaches near both ends, standard deviation 0.3/sqrt(3)
    assert residual.min() < -0.29 and residual.max() > 0.29
    assert residual.std() == pytest.approx(0.3 / math.sqrt(3), rel=0.05)


def test_normal_noise_has_the_given_standard_deviation() -> None:
    x, y = _make({"type": "linear", "n_samples": 4000, "weights": [1.0], "noise": 0.5})
    residual = y - x[:, 0]
    assert residual.std() == pytest.approx(0.5, rel=0.05)
    assert abs(residual.mean()) < 0.05


def test_linear_data_depends_on_the_seed() -> None:
    spec = {"type": "linear", "n_samples": 20}
    x0, y0 = _make(spec, seed=0)
    x0_again, y0_again = _make(spec, seed=0)
    x1, _ = _make(spec, seed=1)
    np.testing.assert_array_equal(x0, x0_again)
    np.testing.assert_array_equal(y0, y0_again)
    assert not np.allclose(x0, x1)


@pytest.mark.parametrize("kind", ["moons", "circles", "xor"])
def test_two_dimensional_kinds_have_two_classes(kind: str) -> None:
    x, y = _make({"type": "classification", "kind": kind, "n_samples": 300})
    assert x.shape == (300, 2) and y.shape == (300,)
    assert y.dtype == np.int64
    assert sorted(np.unique(y).tolist()) == [0, 1]
    # both classes well represented
    assert 100 <= np.count_nonzero(y) <= 200


def test_xor_labels_are_the_sign_of_the_product_without_noise() -> None:
    x, y = _make({"type": "classification", "kind": "xor", "n_samples": 500, "noise": 0.0})
    np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] > 0).astype(np.int64))
    assert np.all(np.abs(x) <= 1.0)


@pytest.mark.parametrize("n_classes,n_features", [(2, 2), (3, 5), (7, 4)])
def test_blobs_have_n_classes_and_n_features(n_classes: int, n_features: int) -> None:
    x, y = _make(
        {
            "type": "classification",
            "kind": "blobs",
            "n_samples": 210,
            "n_classes": n_classes,
            "n_features": n_features,
        }
    )
    assert x.shape == (210, n_features)
    assert sorted(np.unique(y).tolist()) == list(range(n_classes))


def test_digits_are_sklearns_eight_by_eight_set_scaled_to_unit() -> None:
    x, y = _make({"type": "digits"})
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert x.dtype == np.float64
    assert x.min() == 0.0 and x.max() == 1.0
    # the raw pixels are integers 0..16
    np.testing.assert_allclose(x * 16, np.round(x * 16), atol=1e-12)
    assert sorted(np.unique(y).tolist()) == list(range(10))


def test_inline_data_is_taken_as_given() -> None:
    x, y = _make({"type": "inline", "x": [[1.0, 2.0], [3.0, 4.0]], "y": [0.5, -1.0]})
    np.testing.assert_array_equal(x, [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(y, [0.5, -1.0])


def _inline(n: int) -> dict[str, Any]:
    # row i is [i], target 10*i: a row can be traced through the split
    return {
        "type": "inline",
        "x": [[float(i)] for i in range(n)],
        "y": [10.0 * i for i in range(n)],
    }


@pytest.mark.parametrize("n,split", [(50, 0.2), (37, 0.3), (10, 0.0), (9, 0.5), (101, 0.01)])
def test_split_holds_out_floor_of_n_times_split(n: int, split: float) -> None:
    loaded = data.load(_fit(data=_inline(n), validation_split=split))
    n_val = math.floor(n * split)
    assert len(loaded.x_val) == len(loaded.y_val) == n_val
    assert len(loaded.x_train) == len(loaded.y_train) == n - n_val
    # a partition of the rows, targets still with their rows
    rows = np.concatenate([loaded.x_train[:, 0], loaded.x_val[:, 0]])
    assert sorted(rows.tolist()) == [float(i) for i in range(n)]
    np.testing.assert_array_equal(loaded.y_train[:, 0], 10.0 * loaded.x_train[:, 0])
    np.testing.assert_array_equal(loaded.y_val[:, 0], 10.0 * loaded.x_val[:, 0])
    assert loaded.n_features == 1 and loaded.n_classes is None


def test_split_depends_on_the_seed() -> None:
    held_out = [
        sorted(data.load(_fit(data=_inline(40), validation_split=0.25, seed=s)).x_val[:, 0])
        for s in (0, 0, 1)
    ]
    assert held_out[0] == held_out[1]
    assert held_out[0] != held_out[2]


def test_split_shuffles_rather_than_taking_the_tail() -> None:
    loaded = data.load(_fit(data=_inline(40), validation_split=0.25))
    assert sorted(loaded.x_val[:, 0].tolist()) != [float(i) for i in range(30, 40)]
    assert sorted(loaded.x_val[:, 0].tolist()) != [float(i) for i in range(10)]


def test_labels_load_as_integers_with_their_class_count() -> None:
    spec = _fit(
        model={"type": "softmax"},
        data={"type": "classification", "kind": "blobs", "n_samples": 60, "n_classes": 4},
    )
    loaded = data.load(spec)
    assert loaded.n_classes == 4
    assert loaded.y_train.dtype == np.int64 and loaded.y_train.ndim == 1
    assert len(loaded.x_val) == 12


# --- models ---------------------------------------------------------------------------------


def _shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in model.state_dict().items()}


@pytest.mark.parametrize("spec_type", [LinearModel, LogisticModel, SoftmaxModel])
def test_linear_models_are_weight_and_bias(spec_type: Any) -> None:
    model = models.build(spec_type(), n_in=5, n_out=3)
    assert _shapes(model) == {"weight": [3, 5], "bias": [3]}
    no_bias = models.build(spec_type(bias=False), n_in=5, n_out=3)
    assert _shapes(no_bias) == {"weight": [3, 5]}


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_mlp_layers_are_numbered_without_the_activations(activation: str) -> None:
    spec = MLPModel(hidden=[8, 6], activation=activation)
    model = models.build(spec, n_in=4, n_out=3)
    assert _shapes(model) == {
        "layers.0.weight": [8, 4],
        "layers.0.bias": [8],
        "layers.1.weight": [6, 8],
        "layers.1.bias": [6],
        "layers.2.weight": [3, 6],
        "layers.2.bias": [3],
    }
    no_bias = models.build(
        MLPModel(hidden=[8, 6], activation=activation, bias=False), n_in=4, n_out=3
    )
    assert _shapes(no_bias) == {
        "layers.0.weight": [8, 4],
        "layers.1.weight": [6, 8],
        "layers.2.weight": [3, 6],
    }


def test_mlp_without_hidden_layers_is_one_layer() -> None:
    model = models.build(MLPModel(hidden=[]), n_in=3, n_out=2)
    assert _shapes(model) == {"layers.0.weight": [2, 3], "layers.0.bias": [2]}


NUMPY_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
}


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_mlp_forward_is_linear_activation_linear(activation: str) -> None:
    torch.manual_seed(3)
    model = models.build(MLPModel(hidden=[7, 5], activation=activation), n_in=4, n_out=2)
    model = model.double()
    x = np.random.default_rng(0).normal(size=(11, 4))
    params = {k: v.numpy() for k, v in model.state_dict().items()}
    h = x
    for i in range(2):
        h = NUMPY_ACTIVATIONS[activation](
            h @ params[f"layers.{i}.weight"].T + params[f"layers.{i}.bias"]
        )
    expected = h @ params["layers.2.weight"].T + params["layers.2.bias"]
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_linear_forward_is_x_w_transpose_plus_b() -> None:
    torch.manual_seed(1)
    model = models.build(LinearModel(), n_in=3, n_out=2).double()
    x = np.random.default_rng(1).normal(size=(6, 3))
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), x @ w.T + b, atol=1e-12)


@pytest.mark.parametrize(
    "spec",
    [LinearModel(init="zeros"), SoftmaxModel(init="zeros"), MLPModel(hidden=[5, 4], init="zeros")],
)
def test_init_zeros_gives_all_zeros(spec: Any) -> None:
    model = models.build(spec, n_in=3, n_out=2)
    for name, tensor in model.state_dict().items():
        assert torch.count_nonzero(tensor) == 0, name


def test_default_init_is_torchs_and_not_zero() -> None:
    torch.manual_seed(0)
    model = models.build(LinearModel(), n_in=4, n_out=1)
    torch.manual_seed(0)
    reference = torch.nn.Linear(4, 1)
    assert torch.count_nonzero(model.weight) == 4
    torch.testing.assert_close(model.state_dict(), reference.state_dict(), rtol=0, atol=0)
