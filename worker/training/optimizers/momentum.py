"""Momentum in the exponential-average form the seeds use (not torch's SGD momentum)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from worker.training.optimizers.ista import closure_loss


class Momentum(Optimizer):
    r"""``v <- beta*v + (1-beta)*g``, ``theta <- theta - lr*v``, with ``v = 0`` before step 1.

    ``torch.optim.SGD(momentum=mu)`` instead accumulates ``v <- mu*v + g`` and starts from
    ``v = g``; the two differ by a factor of ``1/(1-beta)`` in the effective step.
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.01, beta: float = 0.9) -> None:
        if not lr > 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta value: {beta}")
        super().__init__(params, {"lr": lr, "beta": beta})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure_loss(closure)
        for group in self.param_groups:
            lr, beta = group["lr"], group["beta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:  # created lazily, at zero, as the formula starts
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocity = state["velocity"]
                velocity.mul_(beta).add_(p.grad, alpha=1.0 - beta)
                p.add_(velocity, alpha=-lr)
        return loss
