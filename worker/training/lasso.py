"""Exact solvers for a linear model with mse and an l1 (and l2) penalty, full batch (API.md 3.4).

Both minimise ``F(w, b) = (1/n)||y - Xw - b||^2 + l1*||w||_1 + l2*||w||^2``, the bias not
penalised, and neither takes a gradient step: coordinate descent minimises exactly along one
coordinate at a time, ADMM splits off the l1 term and alternates. One ``step(x, y)`` is one sweep
or one iteration; each writes its result into the model's weight and bias.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.functional import softshrink


def _check_problem(model: nn.Module, l1: float, l2: float) -> None:
    if not isinstance(model, nn.Linear) or model.out_features != 1:
        raise ValueError(f"Needs a linear model with one output, got {model}")
    if not l1 >= 0.0:
        raise ValueError(f"Invalid l1 value: {l1}")
    if not l2 >= 0.0:
        raise ValueError(f"Invalid l2 value: {l2}")


def _soft_threshold(v: float, t: float) -> float:
    """``sign(v)*max(|v| - t, 0)``, with an exact (positive) zero where ``|v| <= t``."""
    return max(v - t, 0.0) + min(v + t, 0.0)


class CoordinateDescent:
    r"""Cyclic coordinate descent (Friedman, Hastie and Tibshirani, 2010).

    One step is one sweep. The bias comes first, ``b = mean(y - Xw)``, exact given the weights;
    then each weight in turn, with the others fixed and ``r = y - Xw - b + x_j w_j`` the partial
    residual: ``w_j = S((2/n) x_j.r, l1) / ((2/n)||x_j||^2 + 2*l2)``, ``S`` the soft-threshold.
    The residual is kept up to date as each coordinate moves, so a sweep costs ``O(n f)``; a
    column of zeros gets ``w_j = 0``. F never increases from one sweep to the next.
    """

    def __init__(self, model: nn.Linear, *, l1: float, l2: float) -> None:
        _check_problem(model, l1, l2)
        self.model, self.l1, self.l2 = model, l1, l2

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor) -> None:
        """One sweep over the bias and every weight, for inputs ``x`` [n, f] and targets [n, 1]."""
        n = x.shape[0]
        weight, bias = self.model.weight, self.model.bias
        w = weight[0].tolist()
        residual = y.reshape(-1) - x @ weight[0]
        if bias is not None:
            bias.fill_(residual.mean().item())
            residual -= bias
        squared_norms = (x * x).sum(dim=0).tolist()
        for j, squared_norm in enumerate(squared_norms):
            if squared_norm == 0.0:  # the coordinate does not touch the fit: its penalty decides
                new = 0.0
            else:
                correlation = (2.0 / n) * ((x[:, j] @ residual).item() + squared_norm * w[j])
                curvature = (2.0 / n) * squared_norm + 2.0 * self.l2
                new = _soft_threshold(correlation, self.l1) / curvature
            if new != w[j]:
                residual.add_(x[:, j], alpha=w[j] - new)
                w[j] = new
        weight[0].copy_(torch.tensor(w, dtype=weight.dtype))


class ADMM:
    r"""ADMM for the lasso and elastic net (Boyd et al., 2011, section 6.4), split as ``w = z``.

    With ``Xc`` and ``yc`` the centred data (the bias is the intercept of the centred problem),
    one iteration is::

        w = ((2/n) Xc^T Xc + (2*l2 + rho) I)^{-1} ((2/n) Xc^T yc + rho (z - u))
        z = S(w + u, l1/rho)
        u = u + w - z

    and the model gets weight ``z``, exactly sparse, and bias ``mean(y) - mean(x).z``. Without a
    bias nothing is centred. The matrix is factored (Cholesky) on the first step and again only
    when ``x`` is a different tensor. ``z`` starts from the model's weight and ``u`` from zero.
    """

    def __init__(self, model: nn.Linear, *, l1: float, l2: float, rho: float = 1.0) -> None:
        _check_problem(model, l1, l2)
        if not rho > 0.0:
            raise ValueError(f"Invalid rho value: {rho}")
        self.model, self.l1, self.l2, self.rho = model, l1, l2, rho
        self._x: Tensor | None = None  # the inputs the cached factor and means belong to
        self._factor = torch.empty(0)
        self._x_mean = torch.empty(0)
        self._z: Tensor | None = None
        self._u = torch.empty(0)

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor) -> None:
        """One ADMM iteration, for inputs ``x`` [n, f] and targets ``y`` [n, 1]."""
        if x is not self._x:
            self._factorise(x)
        if self._z is None:
            self._z = self.model.weight[0].clone()
            self._u = torch.zeros_like(self._z)
        y = y.reshape(-1)
        y_mean = y.mean() if self.model.bias is not None else y.new_zeros(())
        # Xc^T yc = X^T yc, since yc sums to zero
        rhs = (2.0 / x.shape[0]) * (x.T @ (y - y_mean)) + self.rho * (self._z - self._u)
        w = torch.cholesky_solve(rhs[:, None], self._factor)[:, 0]
        self._z = softshrink(w + self._u, self.l1 / self.rho)
        self._u += w - self._z
        self.model.weight[0].copy_(self._z)
        if self.model.bias is not None:
            # copied on the device: no host sync per iteration
            self.model.bias.copy_((y_mean - self._x_mean @ self._z).reshape(1))

    def state_dict(self) -> dict[str, Tensor | None]:
        """The iterates a resumed run needs; the factor is recomputed from the data."""
        return {"z": self._z, "u": self._u}

    def load_state_dict(self, state: dict[str, Tensor | None]) -> None:
        self._z = state["z"]
        self._u = state["u"] if state["u"] is not None else torch.empty(0)

    def _factorise(self, x: Tensor) -> None:
        n, f = x.shape
        has_bias = self.model.bias is not None
        self._x_mean = x.mean(dim=0) if has_bias else x.new_zeros(f)
        centred = x - self._x_mean
        matrix = (2.0 / n) * (centred.T @ centred)
        matrix.diagonal().add_(2.0 * self.l2 + self.rho)
        self._factor = torch.linalg.cholesky(matrix)
        self._x = x
