"""Hand-derived backpropagation (worker/training/manual.py) against autograd and against numpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from service.spec import LinearModel, LogisticModel, MLPModel, SoftmaxModel
from worker.training import manual, models

RTOL, ATOL = 1e-10, 1e-12
ACTIVATIONS = ["relu", "sigmoid", "tanh"]
LOSSES = ["mse", "bce", "cross_entropy"]


@dataclass
class Problem:
    model: nn.Module
    loss: str
    x: Tensor
    y: Tensor
    l1: float
    l2: float

    def kwargs(self) -> dict[str, Any]:
        return {"loss": self.loss, "l1": self.l1, "l2": self.l2, "x": self.x, "y": self.y}


def _problem(
    *,
    loss: str,
    mlp: bool,
    hidden: list[int],
    activation: str = "relu",
    bias: bool = True,
    batch: int = 5,
    n_in: int = 3,
    n_out: int = 2,
    l1: float = 0.0,
    l2: float = 0.0,
    seed: int = 0,
) -> Problem:
    """A float64 model built as the worker builds it, and a batch of data that fits the loss."""
    spec: LinearModel | LogisticModel | SoftmaxModel | MLPModel
    if mlp:
        spec = MLPModel(hidden=hidden, activation=activation, bias=bias)  # type: ignore[arg-type]
    else:
        affine: dict[str, type[LinearModel | LogisticModel | SoftmaxModel]] = {
            "mse": LinearModel,
            "bce": LogisticModel,
            "cross_entropy": SoftmaxModel,
        }
        spec = affine[loss](bias=bias)
    n_out = 1 if loss == "bce" else n_out
    torch.manual_seed(seed)
    model = models.build(spec, n_in=n_in, n_out=n_out).double()
    gen = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(batch, n_in, generator=gen, dtype=torch.float64)
    if loss == "mse":
        y = torch.randn(batch, n_out, generator=gen, dtype=torch.float64)
    elif loss == "bce":
        y = torch.randint(0, 2, (batch,), generator=gen).double()
    else:
        y = torch.randint(0, n_out, (batch,), generator=gen)
    return Problem(model, loss, x, y, l1, l2)


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    loss = draw(st.sampled_from(LOSSES))
    n_out = {"mse": st.integers(1, 4), "bce": st.just(1), "cross_entropy": st.integers(2, 5)}
    return _problem(
        loss=loss,
        mlp=draw(st.booleans()),
        hidden=draw(st.lists(st.integers(1, 8), min_size=0, max_size=3)),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        bias=draw(st.booleans()),
        batch=draw(st.integers(1, 16)),
        n_in=draw(st.integers(1, 6)),
        n_out=draw(n_out[loss]),
        l1=draw(st.floats(0, 1)),
        l2=draw(st.floats(0, 1)),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _autograd(problem: Problem, *, l1_in_gradient: bool = True) -> tuple[Tensor, list[Tensor]]:
    """The objective and its gradients as torch.nn.functional and autograd compute them."""
    model = problem.model
    model.zero_grad(set_to_none=True)
    out = model(problem.x)
    if problem.loss == "mse":
        value = F.mse_loss(out, problem.y)
    elif problem.loss == "bce":
        value = F.binary_cross_entropy_with_logits(out.squeeze(-1), problem.y)
    else:
        value = F.cross_entropy(out, problem.y)
    smooth = value
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            value = value + problem.l1 * p.abs().sum() + problem.l2 * p.square().sum()
            smooth = smooth + problem.l2 * p.square().sum()
    (value if l1_in_gradient else smooth).backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return value.detach(), grads


def _manual(problem: Problem, *, l1_in_gradient: bool = True) -> tuple[Tensor, list[Tensor]]:
    value = manual.backward(problem.model, **problem.kwargs(), l1_in_gradient=l1_in_gradient)
    grads = [p.grad.clone() for p in problem.model.parameters() if p.grad is not None]
    problem.model.zero_grad(set_to_none=True)
    return value, grads


def _assert_grads_equal(got: list[Tensor], want: list[Tensor]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=RTOL, atol=ATOL)


# --- against autograd -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(problem=problems(), l1_in_gradient=st.booleans())
def test_gradients_match_autograd(problem: Problem, l1_in_gradient: bool) -> None:
    _, want = _autograd(problem, l1_in_gradient=l1_in_gradient)
    _, got = _manual(problem, l1_in_gradient=l1_in_gradient)
    _assert_grads_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(problem=problems())
def test_value_matches_autograd(problem: Problem) -> None:
    want, _ = _autograd(problem)
    got, _ = _manual(problem)
    assert got.dim() == 0 and not got.requires_grad and got.grad_fn is None
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_l1_stays_out_of_the_gradient_not_the_value(loss: str) -> None:
    problem = _problem(loss=loss, mlp=True, hidden=[4], activation="tanh", l1=0.7, l2=0.3)
    with_value, with_l1 = _manual(problem)
    without_value, without_l1 = _manual(problem, l1_in_gradient=False)
    torch.testing.assert_close(without_value, with_value, rtol=0, atol=0)
    names = [name for name, _ in problem.model.named_parameters()]
    params = list(problem.model.parameters())
    for name, p, g_with, g_without in zip(names, params, with_l1, without_l1, strict=True):
        l1_part = 0.7 * torch.sign(p.detach()) if name.endswith("weight") else 0.0
        torch.testing.assert_close(g_without, g_with - l1_part, rtol=RTOL, atol=ATOL)
    _assert_grads_equal(without_l1, _autograd(problem, l1_in_gradient=False)[1])


def test_the_l1_gradient_at_zero_is_zero_as_autograd_has_it() -> None:
    problem = _problem(loss="mse", mlp=False, hidden=[], l1=0.5)
    with torch.no_grad():
        problem.model.get_parameter("weight")[0, 0] = 0.0
    _assert_grads_equal(_manual(problem)[1], _autograd(problem)[1])


# --- no autograd in the path ----------------------------------------------------------------


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("autograd was used in the manual path")


@pytest.mark.parametrize(
    ("loss", "mlp", "activation", "bias"),
    [
        ("mse", False, "relu", True),
        ("mse", True, "relu", True),
        ("bce", False, "relu", False),
        ("bce", True, "sigmoid", True),
        ("cross_entropy", False, "relu", True),
        ("cross_entropy", True, "tanh", False),
    ],
)
def test_manual_backward_never_calls_autograd(
    monkeypatch: pytest.MonkeyPatch, loss: str, mlp: bool, activation: str, bias: bool
) -> None:
    problem = _problem(
        loss=loss, mlp=mlp, hidden=[4, 3], activation=activation, bias=bias, l1=0.2, l2=0.1
    )
    want_value, want = _autograd(problem)
    monkeypatch.setattr(torch.Tensor, "backward", _refuse)
    monkeypatch.setattr(torch.autograd, "grad", _refuse)
    monkeypatch.setattr(torch.autograd, "backward", _refuse)
    value, got = _manual(problem)
    monkeypatch.undo()
    assert all(g.grad_fn is None for g in got)
    torch.testing.assert_close(value, want_value, rtol=1e-12, atol=1e-12)
    _assert_grads_equal(got, want)


# --- gradient_check -------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_check_passes_a_correct_model_and_leaves_it_alone(activation: str) -> None:
    problem = _problem(loss="cross_entropy", mlp=True, hidden=[5, 4], activation=activation)
    problem.l1, problem.l2 = 0.1, 0.2
    before = {k: v.clone() for k, v in problem.model.state_dict().items()}
    for l1_in_gradient in (True, False):
        error = manual.gradient_check(
            problem.model, **problem.kwargs(), l1_in_gradient=l1_in_gradient
        )
        assert error < 1e-10
    for k, v in problem.model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.grad is None for p in problem.model.parameters())


def test_gradient_check_catches_a_wrong_derivative(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _problem(loss="mse", mlp=True, hidden=[4], activation="sigmoid")
    assert manual.gradient_check(problem.model, **problem.kwargs()) < 1e-10
    monkeypatch.setattr(manual, "_sigmoid_backward", lambda g, a: g * a)  # drops the (1 - a)
    assert manual.gradient_check(problem.model, **problem.kwargs()) > 1e-2
    assert all(p.grad is None for p in problem.model.parameters())


def test_gradient_check_catches_a_perturbed_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _problem(loss="bce", mlp=False, hidden=[])
    right = manual.backward

    def off_by_a_little(model: nn.Module, **kwargs: Any) -> Tensor:
        value = right(model, **kwargs)
        bias = model.get_parameter("bias")
        assert bias.grad is not None
        bias.grad = bias.grad * 1.001
        return value

    monkeypatch.setattr(manual, "backward", off_by_a_little)
    assert manual.gradient_check(problem.model, **problem.kwargs()) == pytest.approx(1e-3)


# --- the seeds' worked example --------------------------------------------------------------


def test_the_worked_example_linear_relu_linear_mse() -> None:
    """Linear -> ReLU -> Linear -> MSE, with the gradient worked out in numpy by SEEDS.md."""
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, -3.0]])
    y = np.array([[1.0, 0.0], [2.0, -1.0], [0.5, 0.5]])
    w1 = np.array([[0.5, -0.2], [-0.3, 0.8], [0.1, 0.1]])
    b1 = np.array([0.1, -0.1, -0.2])  # some rows land below 0, so the ReLU cuts them
    w2 = np.array([[1.0, -0.5, 0.3], [0.2, 0.4, -0.6]])
    b2 = np.array([0.05, -0.05])

    z1 = x @ w1.T + b1
    a1 = np.maximum(z1, 0)
    yhat = a1 @ w2.T + b2
    loss = np.mean((yhat - y) ** 2)
    g = 2 * (yhat - y) / y.size
    dw2, db2 = g.T @ a1, g.sum(0)
    dz1 = (g @ w2) * (z1 > 0)
    dw1, db1 = dz1.T @ x, dz1.sum(0)
    assert 0 < (z1 > 0).sum() < z1.size

    model = models.build(MLPModel(hidden=[3], activation="relu"), n_in=2, n_out=2).double()
    with torch.no_grad():
        for p, v in zip(model.parameters(), (w1, b1, w2, b2), strict=True):
            p.copy_(torch.from_numpy(v))
    value = manual.backward(
        model, loss="mse", l1=0.0, l2=0.0, x=torch.from_numpy(x), y=torch.from_numpy(y)
    )
    assert float(value) == pytest.approx(loss, rel=1e-12, abs=1e-12)
    for p, want in zip(model.parameters(), (dw1, db1, dw2, db2), strict=True):
        assert p.grad is not None
        np.testing.assert_allclose(p.grad.numpy(), want, rtol=1e-12, atol=1e-12)


# --- what it refuses ------------------------------------------------------------------------


def test_an_unknown_loss_or_model_is_refused() -> None:
    problem = _problem(loss="mse", mlp=False, hidden=[])
    with pytest.raises(ValueError, match="hinge"):
        manual.backward(problem.model, **{**problem.kwargs(), "loss": "hinge"})
    with pytest.raises(TypeError, match="Sequential"):
        manual.backward(nn.Sequential(problem.model), **problem.kwargs())
