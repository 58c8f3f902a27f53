"""The lasso three ways (ISTA/FISTA, coordinate descent, ADMM) against scikit-learn.

The objective (API.md 3.4) for a linear model with mse is
F(w, b) = (1/n)||y - Xw - b||^2 + l1*||w||_1 + l2*||w||^2, the bias unpenalised. scikit-learn
halves the squared error, so with l2 = 0 its minimiser is that of ``Lasso(alpha=l1/2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
import torch
from sklearn.linear_model import ElasticNet, Lasso
from torch import nn
from torch.nn.functional import mse_loss

from worker.training.lasso import ADMM, CoordinateDescent
from worker.training.optimizers.fista import FISTA
from worker.training.optimizers.ista import ISTA

METHODS = ["ista", "fista", "coordinate_descent", "admm"]
GAP = 1e-6  # the suboptimality F(x_k) - F* the step counts are taken at
MAX_STEPS = 10_000


@dataclass(frozen=True, eq=False)  # hashed by identity, for the caches
class Problem:
    x: np.ndarray  # [n, f], standardised columns
    y: np.ndarray  # [n]
    l1: float
    l2: float = 0.0

    @property
    def inputs(self) -> torch.Tensor:
        return torch.from_numpy(self.x)

    @property
    def targets(self) -> torch.Tensor:
        return torch.from_numpy(self.y)[:, None]


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / x.std(axis=0)


@cache
def _lasso_problem() -> Problem:
    """n = 200, f = 10 equicorrelated (0.5) features, 5 of them in the truth, noise sd 0.5.

    The correlation makes the smooth part ill-conditioned (L/mu about 17), so that acceleration
    shows. With l1 = 0.2 the lasso keeps features 0, 1, 4, 7, 9 and zeroes the other five, none
    of them near the threshold.
    """
    rng = np.random.default_rng(0)
    n, f, correlation = 200, 10, 0.5
    shared = rng.standard_normal((n, 1))
    x = math.sqrt(1 - correlation) * rng.standard_normal((n, f)) + math.sqrt(correlation) * shared
    x = _standardise(x)
    w_true = np.array([3.0, -2.0, 0.0, 0.0, 1.5, 0.0, 0.0, -1.0, 0.0, 0.5])
    y = x @ w_true + 1.0 + 0.5 * rng.standard_normal(n)
    return Problem(x=x, y=y, l1=0.2)


@cache
def _sklearn_lasso(problem: Problem, fit_intercept: bool = True) -> tuple[np.ndarray, float]:
    reference = Lasso(
        alpha=problem.l1 / 2, fit_intercept=fit_intercept, tol=1e-12, max_iter=1_000_000
    ).fit(problem.x, problem.y)
    return reference.coef_, float(reference.intercept_)


def _objective(problem: Problem, w: np.ndarray, b: float) -> float:
    residual = problem.y - problem.x @ w - b
    return float(np.mean(residual**2) + problem.l1 * np.abs(w).sum() + problem.l2 * np.sum(w**2))


def _lipschitz(problem: Problem) -> float:
    """L of the smooth part's gradient: 2*lambda_max(X^T X)/n + 2*l2 (the bias shares it)."""
    n = problem.x.shape[0]
    return 2.0 * np.linalg.eigvalsh(problem.x.T @ problem.x).max() / n + 2.0 * problem.l2


def _solver(
    method: str, problem: Problem, *, bias: bool = True
) -> tuple[nn.Linear, Callable[[], object]]:
    """A zero-initialised float64 model and a function that takes one step of ``method`` on it."""
    model = nn.Linear(problem.x.shape[1], 1, bias=bias).double()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    x, y = problem.inputs, problem.targets
    if method == "coordinate_descent":
        cd = CoordinateDescent(model, l1=problem.l1, l2=problem.l2)
        return model, lambda: cd.step(x, y)
    if method == "admm":
        admm = ADMM(model, l1=problem.l1, l2=problem.l2, rho=1.0)
        return model, lambda: admm.step(x, y)
    groups = [{"params": [model.weight], "l1": problem.l1}]
    if bias:
        groups.append({"params": [model.bias], "l1": 0.0})
    optimizer = {"ista": ISTA, "fista": FISTA}[method](groups, lr=1.0 / _lipschitz(problem))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        smooth = mse_loss(model(x), y) + problem.l2 * (model.weight**2).sum()
        smooth.backward()
        return smooth.detach() + problem.l1 * model.weight.abs().sum().detach()

    return model, lambda: optimizer.step(closure)


def _coefficients(model: nn.Linear) -> tuple[np.ndarray, float]:
    w = model.weight.detach()[0].numpy().copy()
    return w, (float(model.bias.item()) if model.bias is not None else 0.0)


def _objectives(method: str, problem: Problem, steps: int) -> list[float]:
    """F at the start and after each of ``steps`` steps."""
    model, step = _solver(method, problem)
    values = [_objective(problem, *_coefficients(model))]
    for _ in range(steps):
        step()
        values.append(_objective(problem, *_coefficients(model)))
    return values


def steps_to_reach(method: str, problem: Problem, gap: float = GAP) -> int:
    """The first k with F(x_k) - F* < gap, F* being F at scikit-learn's solution."""
    optimum = _objective(problem, *_sklearn_lasso(problem))
    model, step = _solver(method, problem)
    for k in range(1, MAX_STEPS + 1):
        step()
        if _objective(problem, *_coefficients(model)) - optimum < gap:
            return k
    raise AssertionError(f"{method} did not reach F* + {gap} in {MAX_STEPS} steps")


@cache
def step_counts() -> dict[str, int]:
    return {method: steps_to_reach(method, _lasso_problem()) for method in METHODS}


# --- every solver finds scikit-learn's lasso -------------------------------------------------


@pytest.mark.parametrize(
    "method,steps", [("ista", 400), ("fista", 300), ("coordinate_descent", 50), ("admm", 100)]
)
def test_converges_to_sklearns_lasso(method: str, steps: int) -> None:
    problem = _lasso_problem()
    coef, intercept = _sklearn_lasso(problem)
    model, step = _solver(method, problem)
    for _ in range(steps):
        step()
    w, b = _coefficients(model)
    np.testing.assert_allclose(w, coef, rtol=0, atol=1e-4)
    assert b == pytest.approx(intercept, abs=1e-4)
    # exact zeros where scikit-learn's are, and only there
    assert 3 <= int((coef == 0.0).sum()) <= 7
    assert ((w == 0.0) == (coef == 0.0)).all(), (w, coef)


@pytest.mark.parametrize("method", METHODS)
def test_a_model_without_bias_fits_no_intercept(method: str) -> None:
    problem = _lasso_problem()
    problem = Problem(x=problem.x, y=problem.y - problem.y.mean() + 0.3, l1=problem.l1)
    coef, _ = _sklearn_lasso(problem, fit_intercept=False)
    model, step = _solver(method, problem, bias=False)
    for _ in range(600):
        step()
    np.testing.assert_allclose(_coefficients(model)[0], coef, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_elastic_net_matches_sklearn(method: str) -> None:
    # ours / 2 = (1/2n)||.||^2 + (l1/2)||w||_1 + (l2/2)||w||^2, and ElasticNet's penalty is
    # alpha*l1_ratio*||w||_1 + 0.5*alpha*(1 - l1_ratio)*||w||^2, so
    # alpha*l1_ratio = l1/2 and alpha*(1 - l1_ratio) = l2: alpha = l1/2 + l2.
    lasso = _lasso_problem()
    problem = Problem(x=lasso.x, y=lasso.y, l1=0.2, l2=0.3)
    alpha = problem.l1 / 2 + problem.l2
    reference = ElasticNet(
        alpha=alpha, l1_ratio=(problem.l1 / 2) / alpha, tol=1e-12, max_iter=1_000_000
    ).fit(problem.x, problem.y)
    model, step = _solver(method, problem)
    for _ in range(400):
        step()
    w, b = _coefficients(model)
    np.testing.assert_allclose(w, reference.coef_, rtol=0, atol=1e-4)
    assert b == pytest.approx(reference.intercept_, abs=1e-4)
    assert ((w == 0.0) == (reference.coef_ == 0.0)).all()
    assert (reference.coef_ == 0.0).any() and (reference.coef_ != 0.0).any()


def test_coordinate_descent_gives_a_zero_column_a_zero_weight() -> None:
    lasso = _lasso_problem()
    x = lasso.x.copy()
    x[:, 4] = 0.0
    problem = Problem(x=x, y=lasso.y, l1=lasso.l1)
    coef, intercept = _sklearn_lasso(problem)
    model, step = _solver("coordinate_descent", problem)
    for _ in range(100):
        step()
    w, b = _coefficients(model)
    assert w[4] == 0.0
    np.testing.assert_allclose(w, coef, rtol=0, atol=1e-4)
    assert b == pytest.approx(intercept, abs=1e-4)


# --- how fast ---------------------------------------------------------------------------------


def test_fista_needs_fewer_steps_than_ista() -> None:
    counts = step_counts()
    assert counts["fista"] < counts["ista"]


def test_report_steps_to_reach_the_optimum() -> None:
    """Run with ``-s`` to see the figures."""
    counts = step_counts()
    print(f"\nsteps to reach F(x_k) - F* < {GAP:g} (n=200, f=10, correlation 0.5, l1=0.2):")
    for method, count in counts.items():
        print(f"  {method:<20} {count:>5}")
    assert all(1 <= count <= MAX_STEPS for count in counts.values())


@pytest.mark.parametrize("method", ["ista", "coordinate_descent"])
def test_objective_never_increases(method: str) -> None:
    values = np.array(_objectives(method, _lasso_problem(), steps=200))
    assert (np.diff(values) <= 1e-12).all()
    assert values[-1] < values[0]


# --- ISTA and FISTA against their formulas ----------------------------------------------------


def test_ista_without_penalty_is_plain_gradient_descent() -> None:
    problem = _lasso_problem()
    x, y = problem.inputs, problem.targets
    torch.manual_seed(0)
    ours = nn.Linear(problem.x.shape[1], 1).double()
    plain = nn.Linear(problem.x.shape[1], 1).double()
    plain.load_state_dict(ours.state_dict())
    lr = 1.0 / _lipschitz(problem)
    optimizers = [ISTA(ours.parameters(), lr=lr), torch.optim.SGD(plain.parameters(), lr=lr)]
    for _ in range(25):
        for model, optimizer in zip([ours, plain], optimizers, strict=True):
            optimizer.zero_grad()
            mse_loss(model(x), y).backward()
            optimizer.step()
        assert torch.equal(ours.weight, plain.weight)
        assert torch.equal(ours.bias, plain.bias)


def _fista_by_hand(problem: Problem, steps: int) -> list[np.ndarray]:
    """Beck and Teboulle's FISTA in numpy on theta = (w, b): the iterates x_1 .. x_steps."""
    n = problem.x.shape[0]
    design = np.hstack([problem.x, np.ones((n, 1))])
    lr = 1.0 / _lipschitz(problem)
    threshold = np.r_[np.full(problem.x.shape[1], lr * problem.l1), 0.0]
    previous = current = np.zeros(design.shape[1])
    t, path = 1.0, []
    for k in range(steps):
        point = current
        if k > 0:  # t_1 = 1 makes the second step's coefficient zero as well
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            point = current + ((t - 1) / t_next) * (current - previous)
            t = t_next
        v = point - lr * (-2.0 / n) * design.T @ (problem.y - design @ point)
        previous, current = current, np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)
        path.append(current)
    return path


def test_fista_follows_beck_and_teboulle_and_reports_the_loss_at_x_k() -> None:
    problem = _lasso_problem()
    model, step = _solver("fista", problem)
    for k, expected in enumerate(_fista_by_hand(problem, steps=40), start=1):
        before = _objective(problem, *_coefficients(model))
        loss = step()
        assert float(loss) == pytest.approx(before, rel=1e-12), f"step {k}"
        w, b = _coefficients(model)
        np.testing.assert_allclose(np.r_[w, b], expected, rtol=1e-9, atol=1e-12)


def test_fista_calls_the_closure_once_while_the_coefficient_is_zero() -> None:
    theta = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    optimizer = FISTA([theta], lr=0.1, l1=0.5)
    calls = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (theta**2).sum()
        loss.backward()
        calls.append(theta.detach().clone())
        return loss.detach()

    per_step = []
    for _ in range(4):
        before = len(calls)
        optimizer.step(closure)
        per_step.append(len(calls) - before)
    assert per_step == [1, 1, 2, 2]  # t_1 = 1 makes the first two coefficients zero


# --- bad arguments ----------------------------------------------------------------------------


def _weights() -> list[torch.Tensor]:
    return [torch.zeros(2, dtype=torch.float64, requires_grad=True)]


@pytest.mark.parametrize("optimizer", [ISTA, FISTA])
@pytest.mark.parametrize("lr", [0.0, -0.1, math.nan])
def test_proximal_optimizers_refuse_a_bad_learning_rate(optimizer: type, lr: float) -> None:
    with pytest.raises(ValueError, match="learning rate"):
        optimizer(_weights(), lr=lr)


@pytest.mark.parametrize("optimizer", [ISTA, FISTA])
def test_proximal_optimizers_refuse_a_negative_l1(optimizer: type) -> None:
    with pytest.raises(ValueError, match="l1 value: -0.1"):
        optimizer(_weights(), lr=0.1, l1=-0.1)
    with pytest.raises(ValueError, match="l1 value: -1"):
        optimizer([{"params": _weights(), "l1": -1.0}], lr=0.1)


def test_fista_refuses_to_step_without_a_closure() -> None:
    weights = _weights()
    optimizer = FISTA(weights, lr=0.1, l1=0.1)
    (weights[0] ** 2).sum().backward()
    with pytest.raises(ValueError, match="closure"):
        optimizer.step()


@pytest.mark.parametrize("solver", [CoordinateDescent, ADMM])
def test_solvers_refuse_a_model_with_two_outputs(solver: type) -> None:
    with pytest.raises(ValueError, match="one output"):
        solver(nn.Linear(3, 2), l1=0.1, l2=0.0)
    with pytest.raises(ValueError, match="linear model"):
        solver(nn.Sequential(nn.Linear(3, 1)), l1=0.1, l2=0.0)


@pytest.mark.parametrize("solver", [CoordinateDescent, ADMM])
@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_solvers_refuse_a_negative_penalty(solver: type, penalty: str) -> None:
    penalties = {"l1": 0.1, "l2": 0.1, penalty: -0.5}
    with pytest.raises(ValueError, match=f"{penalty} value: -0.5"):
        solver(nn.Linear(3, 1), **penalties)


@pytest.mark.parametrize("rho", [0.0, -1.0, math.nan])
def test_admm_refuses_a_rho_that_is_not_positive(rho: float) -> None:
    with pytest.raises(ValueError, match="rho"):
        ADMM(nn.Linear(3, 1), l1=0.1, l2=0.0, rho=rho)
