"""The test functions of `minimize` jobs (API.md 3.6), written for float64 tensors."""

from __future__ import annotations

from collections.abc import Callable

import torch

from service import spec as specs

Function = Callable[[torch.Tensor], torch.Tensor]


def build(objective: specs.ObjectiveSpec, *, device: torch.device) -> Function:
    """`f(x)` for a spec: x is a 1-D float64 tensor, f(x) a 0-dim one."""
    if isinstance(objective, specs.Quadratic):
        scales = torch.tensor(objective.scales, dtype=torch.float64, device=device)
        return lambda x: (scales * x.square()).sum()
    if isinstance(objective, specs.Rosenbrock):
        a, b = objective.a, objective.b
        return lambda x: (a - x[0]) ** 2 + b * (x[1] - x[0] ** 2) ** 2
    return _FIXED[objective.type]


def _beale(x: torch.Tensor) -> torch.Tensor:
    u, v = x[0], x[1]
    return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2


def _himmelblau(x: torch.Tensor) -> torch.Tensor:
    u, v = x[0], x[1]
    return (u**2 + v - 11) ** 2 + (u + v**2 - 7) ** 2


def _booth(x: torch.Tensor) -> torch.Tensor:
    u, v = x[0], x[1]
    return (u + 2 * v - 7) ** 2 + (2 * u + v - 5) ** 2


def _saddle(x: torch.Tensor) -> torch.Tensor:
    return x[0] ** 2 - x[1] ** 2


_FIXED: dict[str, Function] = {
    "beale": _beale,
    "himmelblau": _himmelblau,
    "booth": _booth,
    "saddle": _saddle,
}
