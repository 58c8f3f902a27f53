"""Optimizers by spec: torch's own where torch has them, ours where the seeds differ."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, LRScheduler, StepLR

from service.schemas.spec import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    CosineSchedule,
    ExponentialSchedule,
    Momentum,
    OptimizerSpec,
    RMSprop,
    ScheduleSpec,
    StepSchedule,
)
from worker.training.optimizers.momentum import Momentum as MomentumOptimizer

_TORCH: dict[type, type[Optimizer]] = {
    SGD: torch.optim.SGD,
    Adagrad: torch.optim.Adagrad,
    RMSprop: torch.optim.RMSprop,
    Adam: torch.optim.Adam,
    AdamW: torch.optim.AdamW,
    Momentum: MomentumOptimizer,
}


def build(spec: OptimizerSpec, params: Iterable[Any]) -> Optimizer:
    """The optimizer a spec names, with the spec's hyper-parameters."""
    kwargs = spec.model_dump(exclude={"type"})
    return _TORCH[type(spec)](params, **kwargs)


def build_schedule(spec: ScheduleSpec | None, optimizer: Optimizer) -> LRScheduler | None:
    """The learning-rate schedule, stepped once per epoch, or None for a constant rate."""
    if isinstance(spec, StepSchedule):
        return StepLR(optimizer, step_size=spec.step_size, gamma=spec.gamma)
    if isinstance(spec, ExponentialSchedule):
        return ExponentialLR(optimizer, gamma=spec.gamma)
    if isinstance(spec, CosineSchedule):
        return CosineAnnealingLR(optimizer, T_max=spec.t_max or 1, eta_min=spec.eta_min)
    return None
