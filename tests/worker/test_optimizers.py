"""Optimizers (API.md 3.4) and schedules (3.5) against formulas worked by hand and torch itself."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter

from service.spec import OptimizerSpec, ScheduleSpec
from worker.training import optimizers
from worker.training.optimizers.momentum import Momentum

OPTIMIZER = TypeAdapter(OptimizerSpec)
SCHEDULE = TypeAdapter(ScheduleSpec)


def _grad(theta: list[float]) -> list[float]:
    """Gradient of f(a, b) = (a - 1)^2 + 3*b^2 + a*b."""
    a, b = theta
    return [2.0 * (a - 1.0) + b, 6.0 * b + a]


def _run(
    optimizer_factory: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    start: list[float],
    steps: int,
) -> list[list[float]]:
    """Points after each step of a torch optimizer on f, in float64."""
    theta = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_factory([theta])
    path = []
    for _ in range(steps):
        optimizer.zero_grad()
        a, b = theta[0], theta[1]
        loss = (a - 1.0) ** 2 + 3.0 * b**2 + a * b
        loss.backward()
        optimizer.step()
        path.append(theta.detach().tolist())
    return path


def _momentum_by_hand(start: list[float], lr: float, beta: float, steps: int) -> list[list[float]]:
    theta, v = list(start), [0.0, 0.0]
    path = []
    for _ in range(steps):
        g = _grad(theta)
        v = [beta * vi + (1.0 - beta) * gi for vi, gi in zip(v, g, strict=True)]
        theta = [ti - lr * vi for ti, vi in zip(theta, v, strict=True)]
        path.append(theta)
    return path


@pytest.mark.parametrize("lr,beta", [(0.1, 0.9), (0.05, 0.5), (0.2, 0.0), (0.01, 0.99)])
def test_momentum_follows_the_exponential_average_formula(lr: float, beta: float) -> None:
    start = [3.0, -2.0]
    got = _run(lambda p: Momentum(p, lr=lr, beta=beta), start, steps=8)
    expected = _momentum_by_hand(start, lr, beta, steps=8)
    for step, (g, e) in enumerate(zip(got, expected, strict=True), start=1):
        assert g == pytest.approx(e, rel=1e-12, abs=1e-12), f"step {step}"


def test_momentum_first_steps_worked_out() -> None:
    # f(x) = x^2 from x = 10, lr 0.1, beta 0.9: g = 2x
    # step 1: v = 0.1*20 = 2,            x = 10 - 0.2 = 9.8
    # step 2: v = 0.9*2 + 0.1*19.6 = 3.76, x = 9.8 - 0.376 = 9.424
    # step 3: v = 0.9*3.76 + 0.1*18.848 = 5.2688, x = 9.424 - 0.52688 = 8.89712
    x = torch.tensor([10.0], dtype=torch.float64, requires_grad=True)
    optimizer = Momentum([x], lr=0.1, beta=0.9)
    points = []
    for _ in range(3):
        optimizer.zero_grad()
        (x**2).sum().backward()
        optimizer.step()
        points.append(x.item())
    assert points == pytest.approx([9.8, 9.424, 8.89712], rel=1e-12)
    assert optimizer.state[x]["velocity"].item() == pytest.approx(5.2688, rel=1e-12)


def test_momentum_is_not_torchs_sgd_momentum() -> None:
    start = [3.0, -2.0]
    ours = _run(lambda p: Momentum(p, lr=0.1, beta=0.9), start, steps=5)
    torchs = _run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), start, steps=5)
    # torch starts from v = g, so its first step is ten times ours
    first_ours = [s - t for s, t in zip(start, ours[0], strict=True)]
    first_torch = [s - t for s, t in zip(start, torchs[0], strict=True)]
    assert first_torch == pytest.approx([10 * d for d in first_ours], rel=1e-12)
    for a, b in zip(ours, torchs, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) > 1e-3


def test_momentum_with_beta_zero_is_plain_gradient_descent() -> None:
    start = [3.0, -2.0]
    ours = _run(lambda p: Momentum(p, lr=0.1, beta=0.0), start, steps=6)
    plain = _run(lambda p: torch.optim.SGD(p, lr=0.1), start, steps=6)
    for a, b in zip(ours, plain, strict=True):
        assert a == pytest.approx(b, rel=1e-14, abs=1e-14)


def test_momentum_skips_parameters_without_gradient() -> None:
    used = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    unused = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
    optimizer = Momentum([used, unused], lr=0.5, beta=0.5)
    (used**2).sum().backward()
    optimizer.step()
    assert used.item() == pytest.approx(1.0 - 0.5 * 0.5 * 2.0)
    assert unused.item() == 5.0
    assert unused not in optimizer.state


def test_momentum_honours_per_group_hyper_parameters() -> None:
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    optimizer = Momentum(
        [{"params": [a], "lr": 0.1}, {"params": [b], "beta": 0.0}], lr=0.2, beta=0.5
    )
    (a**2 + b**2).sum().backward()
    optimizer.step()
    assert a.item() == pytest.approx(1.0 - 0.1 * 0.5 * 2.0, rel=1e-14)
    assert b.item() == pytest.approx(1.0 - 0.2 * 1.0 * 2.0, rel=1e-14)


@pytest.mark.parametrize("lr", [0.0, -0.1, -1.0, math.nan])
def test_momentum_refuses_a_bad_learning_rate(lr: float) -> None:
    with pytest.raises(ValueError, match="learning rate"):
        Momentum([torch.zeros(1, requires_grad=True)], lr=lr)


@pytest.mark.parametrize("beta", [-0.1, 1.0, 1.5, math.nan])
def test_momentum_refuses_beta_outside_zero_one(beta: float) -> None:
    with pytest.raises(ValueError, match="beta"):
        Momentum([torch.zeros(1, requires_grad=True)], lr=0.1, beta=beta)


# --- the seeds' experiment: f(x) = x^2 from x = 10, lr 0.1, 20 steps ------------------------


def _seed_path(update: Callable[[float, float, int], float]) -> list[float]:
    x, path = 10.0, []
    for t in range(1, 21):
        x = update(x, 2.0 * x, t)
        path.append(x)
    return path


def _gd() -> list[float]:
    return _seed_path(lambda x, g, t: x - 0.1 * g)


def _rmsprop(alpha: float = 0.99, eps: float = 1e-8) -> list[float]:
    s = [0.0]

    def update(x: float, g: float, t: int) -> float:
        s[0] = alpha * s[0] + (1 - alpha) * g * g
        return x - 0.1 * g / (math.sqrt(s[0]) + eps)

    return _seed_path(update)


def _adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> list[float]:
    m, v = [0.0], [0.0]

    def update(x: float, g: float, t: int) -> float:
        m[0] = b1 * m[0] + (1 - b1) * g
        v[0] = b2 * v[0] + (1 - b2) * g * g
        m_hat, v_hat = m[0] / (1 - b1**t), v[0] / (1 - b2**t)
        return x - 0.1 * m_hat / (math.sqrt(v_hat) + eps)

    return _seed_path(update)


def _adagrad(eps: float = 1e-10) -> list[float]:
    big_g = [0.0]

    def update(x: float, g: float, t: int) -> float:
        big_g[0] += g * g
        return x - 0.1 * g / (math.sqrt(big_g[0]) + eps)

    return _seed_path(update)


def _momentum() -> list[float]:
    v = [0.0]

    def update(x: float, g: float, t: int) -> float:
        v[0] = 0.9 * v[0] + 0.1 * g
        return x - 0.1 * v[0]

    return _seed_path(update)


@pytest.mark.parametrize(
    "spec,reference",
    [
        pytest.param({"type": "sgd", "lr": 0.1}, _gd, id="gd"),
        pytest.param({"type": "momentum", "lr": 0.1, "beta": 0.9}, _momentum, id="momentum"),
        pytest.param({"type": "rmsprop", "lr": 0.1}, _rmsprop, id="rmsprop"),
        pytest.param({"type": "adam", "lr": 0.1}, _adam, id="adam"),
        pytest.param({"type": "adagrad", "lr": 0.1}, _adagrad, id="adagrad"),
    ],
)
def test_built_optimizers_follow_the_seed_formulas_on_x_squared(
    spec: dict[str, Any], reference: Callable[[], list[float]]
) -> None:
    x = torch.tensor([10.0], dtype=torch.float64, requires_grad=True)
    optimizer = optimizers.build(OPTIMIZER.validate_python(spec), [x])
    path = []
    for _ in range(20):
        optimizer.zero_grad()
        (x**2).sum().backward()
        optimizer.step()
        path.append(x.item())
    assert path == pytest.approx(reference(), rel=1e-10, abs=1e-12)


def test_gd_on_x_squared_is_geometric() -> None:
    assert _gd() == pytest.approx([10.0 * 0.8**k for k in range(1, 21)], rel=1e-12)


# --- the spec's hyper-parameters reach torch's optimizers ----------------------------------


@pytest.mark.parametrize(
    "spec,torch_class,kwargs",
    [
        ({"type": "sgd", "lr": 0.05}, torch.optim.SGD, {"lr": 0.05}),
        (
            {"type": "sgd", "lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.1},
            torch.optim.SGD,
            {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.1},
        ),
        (
            {"type": "sgd", "lr": 0.05, "momentum": 0.7, "nesterov": True},
            torch.optim.SGD,
            {"lr": 0.05, "momentum": 0.7, "nesterov": True},
        ),
        (
            {"type": "adagrad", "lr": 0.3, "lr_decay": 0.1, "initial_accumulator_value": 0.5},
            torch.optim.Adagrad,
            {"lr": 0.3, "lr_decay": 0.1, "initial_accumulator_value": 0.5},
        ),
        (
            {"type": "rmsprop", "lr": 0.02, "alpha": 0.9, "momentum": 0.5, "centered": True},
            torch.optim.RMSprop,
            {"lr": 0.02, "alpha": 0.9, "momentum": 0.5, "centered": True},
        ),
        (
            {"type": "adam", "lr": 0.05, "betas": [0.8, 0.99], "amsgrad": True},
            torch.optim.Adam,
            {"lr": 0.05, "betas": (0.8, 0.99), "amsgrad": True},
        ),
        ({"type": "adamw", "lr": 0.05}, torch.optim.AdamW, {"lr": 0.05, "weight_decay": 0.01}),
        (
            {"type": "adamw", "lr": 0.05, "weight_decay": 0.5},
            torch.optim.AdamW,
            {"lr": 0.05, "weight_decay": 0.5},
        ),
    ],
)
def test_torch_optimizers_get_the_specs_hyper_parameters(
    spec: dict[str, Any], torch_class: type[torch.optim.Optimizer], kwargs: dict[str, Any]
) -> None:
    built = optimizers.build(OPTIMIZER.validate_python(spec), [torch.zeros(1, requires_grad=True)])
    assert type(built) is torch_class
    start = [3.0, -2.0]
    got = _run(lambda p: optimizers.build(OPTIMIZER.validate_python(spec), p), start, steps=10)
    expected = _run(lambda p: torch_class(p, **kwargs), start, steps=10)
    assert got == expected
    for name, value in kwargs.items():
        assert built.param_groups[0][name] == value, name


def test_momentum_spec_builds_the_exponential_average_optimizer() -> None:
    built = optimizers.build(
        OPTIMIZER.validate_python({"type": "momentum", "lr": 0.3, "beta": 0.7}),
        [torch.zeros(1, requires_grad=True)],
    )
    assert isinstance(built, Momentum)
    assert built.param_groups[0]["lr"] == 0.3 and built.param_groups[0]["beta"] == 0.7


# --- schedules ------------------------------------------------------------------------------


def _rates(schedule: dict[str, Any] | None, lr: float, epochs: int) -> list[float]:
    """The rate in force during each epoch, the schedule stepped once per epoch."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    built = optimizers.build_schedule(
        SCHEDULE.validate_python(schedule) if schedule else None, optimizer
    )
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if built is not None:
            built.step()
    return rates


def test_no_schedule_keeps_the_rate() -> None:
    assert _rates(None, 0.3, 5) == [0.3] * 5


def test_step_schedule_closed_form() -> None:
    rates = _rates({"type": "step", "step_size": 3, "gamma": 0.5}, 0.8, 10)
    assert rates == pytest.approx([0.8 * 0.5 ** (e // 3) for e in range(10)], rel=1e-12)


def test_exponential_schedule_closed_form() -> None:
    rates = _rates({"type": "exponential", "gamma": 0.9}, 0.5, 8)
    assert rates == pytest.approx([0.5 * 0.9**e for e in range(8)], rel=1e-12)


def test_cosine_schedule_closed_form() -> None:
    rates = _rates({"type": "cosine", "t_max": 6, "eta_min": 0.01}, 0.2, 7)
    expected = [0.01 + (0.2 - 0.01) * (1 + math.cos(math.pi * e / 6)) / 2 for e in range(7)]
    assert rates == pytest.approx(expected, rel=1e-9, abs=1e-12)
