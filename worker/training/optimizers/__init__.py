"""Optimizers by spec: torch's own where torch has them, ours where the seeds differ.

One module per algorithm torch lacks, and vectorised.py for a group's runs; may import
torch, service.spec and the rest of worker.training, nothing of HTTP or SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, LRScheduler, StepLR

from service import spec as specs
from worker.training.optimizers.fista import FISTA
from worker.training.optimizers.ista import ISTA
from worker.training.optimizers.momentum import Momentum

_TORCH: dict[type, type[Optimizer]] = {
    specs.SGD: torch.optim.SGD,
    specs.Adagrad: torch.optim.Adagrad,
    specs.RMSprop: torch.optim.RMSprop,
    specs.Adam: torch.optim.Adam,
    specs.AdamW: torch.optim.AdamW,
    specs.Momentum: Momentum,
    specs.ISTA: ISTA,
    specs.FISTA: FISTA,
}


class Solver(Protocol):
    """An exact method on the whole training set: one `step` is one sweep or iteration."""

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None: ...


def build(
    spec: Any, params: nn.Module | Iterable[Any], penalty: specs.Penalty | None = None
) -> Optimizer:
    """The optimizer a spec names, with the spec's hyper-parameters.

    ISTA and FISTA apply `penalty.l1` themselves, to the weights only: given a model, its
    weights and biases go in separate parameter groups.
    """
    kwargs = spec.model_dump(exclude={"type"})
    cls = _TORCH[type(spec)]
    if isinstance(spec, specs.ISTA | specs.FISTA):
        l1 = penalty.l1 if penalty is not None else 0.0
        groups = _weights_and_biases(params, l1) if isinstance(params, nn.Module) else params
        return cls(groups, **kwargs)
    return cls(params.parameters() if isinstance(params, nn.Module) else params, **kwargs)


def _weights_and_biases(model: nn.Module, l1: float) -> list[dict[str, Any]]:
    named = list(model.named_parameters())
    weights = [p for name, p in named if name.endswith("weight")]
    others = [p for name, p in named if not name.endswith("weight")]
    groups = [{"params": weights, "l1": l1}]
    return groups + ([{"params": others, "l1": 0.0}] if others else [])


def build_solver(spec: Any, model: nn.Module, penalty: specs.Penalty) -> Solver:
    """Coordinate descent or ADMM over a linear model."""
    from worker.training.lasso import ADMM, CoordinateDescent

    if not isinstance(model, nn.Linear):
        raise TypeError(f"optimizer {spec.type!r} needs a linear model")
    if isinstance(spec, specs.ADMM):
        return ADMM(model, l1=penalty.l1, l2=penalty.l2, rho=spec.rho)
    return CoordinateDescent(model, l1=penalty.l1, l2=penalty.l2)


def build_schedule(spec: Any, optimizer: Optimizer) -> LRScheduler | None:
    """The learning-rate schedule, stepped once per epoch, or None for a constant rate."""
    if isinstance(spec, specs.StepSchedule):
        return StepLR(optimizer, step_size=spec.step_size, gamma=spec.gamma)
    if isinstance(spec, specs.ExponentialSchedule):
        return ExponentialLR(optimizer, gamma=spec.gamma)
    if isinstance(spec, specs.CosineSchedule):
        return CosineAnnealingLR(optimizer, T_max=spec.t_max or 1, eta_min=spec.eta_min)
    return None
