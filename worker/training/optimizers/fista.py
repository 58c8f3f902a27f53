"""FISTA: proximal gradient descent with Nesterov's extrapolation (Beck and Teboulle, 2009)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from worker.training.optimizers.ista import Proximal


class FISTA(Proximal):
    r"""``x_{k+1} = S(y - lr*grad(y), lr*l1)`` at ``y = x_k + ((t_k - 1)/t_{k+1}) (x_k - x_{k-1})``.

    ``t_1 = 1`` and ``t_{k+1} = (1 + sqrt(1 + 4 t_k^2))/2``; ``S`` is the soft-threshold, as in
    :class:`~worker.training.optimizers.ista.ISTA`, and param groups may carry their own ``l1``.

    Between steps the parameters hold the iterate ``x_k``, never the extrapolated point, so the
    loss a step returns and the parameters a run ends with are those of ``x_k``. That takes two
    gradients per step, hence the closure is required: it must zero the grads, compute the
    objective, call ``backward()`` on its smooth part and return the objective. ``step`` calls it
    at ``x_k`` (that is the loss it returns) and again at ``y``, unless ``y = x_k`` (the first two
    steps, where the coefficient is 0), when the first gradient is reused.
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        if closure is None:
            raise ValueError(
                "FISTA requires a closure: it needs the gradient at the extrapolated point too"
            )
        with torch.enable_grad():
            loss = closure()
        if self._extrapolate():
            with torch.enable_grad():
                closure()
        self._proximal_steps()
        return loss

    def _extrapolate(self) -> bool:
        """Move each parameter from ``x_k`` to ``y``, keeping ``x_k``; whether any moved."""
        moved = False
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "previous" not in state:  # the first step: x_0 stands in for x_{-1}, t_1 = 1
                    state["t"] = 1.0
                    state["previous"] = p.clone(memory_format=torch.preserve_format)
                    continue
                t = state["t"]
                t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
                coefficient = (t - 1.0) / t_next
                state["t"] = t_next
                difference = p - state["previous"]
                state["previous"].copy_(p)
                if coefficient != 0.0:
                    p.add_(difference, alpha=coefficient)
                    moved = True
        return moved
