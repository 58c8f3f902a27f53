"""Proximal gradient descent (ISTA): a gradient step on the smooth part, then soft-thresholding."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.nn.functional import softshrink
from torch.optim import Optimizer


def check_hyperparameters(lr: float, l1: float) -> None:
    """Raise ValueError naming a learning rate that is not positive or an l1 that is negative."""
    if not lr > 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not l1 >= 0.0:
        raise ValueError(f"Invalid l1 value: {l1}")


def proximal_step_(p: Tensor, grad: Tensor, lr: float, l1: float) -> None:
    """``p <- S(p - lr*grad, lr*l1)`` in place, ``S(v, t) = sign(v)*max(|v| - t, 0)``.

    ``S`` is torch's ``softshrink``: it writes exact zeros where ``|v| <= t``.
    """
    p.add_(grad, alpha=-lr)
    if l1 != 0.0:  # with no penalty the step is plain gradient descent, bit for bit
        p.copy_(softshrink(p, lr * l1))


def closure_loss(closure: Callable[[], float] | None) -> float | None:
    """The closure's loss, computed with gradients on, as torch's optimizers take it."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class Proximal(Optimizer):
    """What ISTA and FISTA share: `lr` and `l1` per param group, checked, and the step
    `proximal_step_` on every parameter that has a gradient."""

    def __init__(self, params: Iterable[Any], lr: float, l1: float = 0.0) -> None:
        check_hyperparameters(lr, l1)
        super().__init__(params, {"lr": lr, "l1": l1})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # a group's own l1 must be checked too: a negative one would push weights away from zero
        check_hyperparameters(
            param_group.get("lr", self.defaults["lr"]), param_group.get("l1", self.defaults["l1"])
        )
        super().add_param_group(param_group)

    def _proximal_steps(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    proximal_step_(p, p.grad, group["lr"], group["l1"])


class ISTA(Proximal):
    r"""``theta <- S(theta - lr*g, lr*l1)``: the proximal gradient step for ``smooth + l1*|theta|``.

    ``g`` is the gradient of the smooth part only (the loss, and any l2 term); the l1 part is
    handled by the soft-threshold ``S``. Each param group may carry its own ``l1``: pass the
    weights with the penalty and the biases with ``l1=0``. With ``l1 = 0`` this is
    ``torch.optim.SGD(lr=lr)``.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure_loss(closure)
        self._proximal_steps()
        return loss
