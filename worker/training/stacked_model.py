"""R models of one shape as one: parameters stacked as rows, a forward pass of batched matmuls.

Row r of `flat` (`[R, P]`) is run r's parameters flattened in `state_dict` order, which is the
trajectory point API.md section 4 asks for. Each layer's weight and bias are views into `flat`
(`[R, out, in]` and `[R, out]`) that autograd treats as leaves: an optimizer that updates
`flat` in place moves them all, and the gradients of the summed per-run objectives are each
run's own gradients, since no run's parameters touch another's loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from service.spec import FitSpec
from worker.training import models


class StackedModel:
    """The same model for R runs, each initialised exactly as `train` initialises its own."""

    def __init__(
        self,
        specs: Sequence[FitSpec],
        *,
        n_in: int,
        n_out: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        rows = []
        for spec in specs:
            # what `train` does: seed torch, build (in float32 on the CPU), then move and cast
            torch.manual_seed(spec.seed)
            module = models.build(spec.model, n_in=n_in, n_out=n_out).to(device, dtype)
            state = module.state_dict()
            rows.append(torch.cat([v.detach().flatten() for v in state.values()]))
        #: name -> shape of one run's tensor, in state_dict order
        self.shapes = {name: tuple(value.shape) for name, value in state.items()}
        self.activation: Callable[[Tensor], Tensor] | None = getattr(module, "activation", None)
        self.flat = torch.stack(rows)
        self._link()

    @property
    def runs(self) -> int:
        return len(self.flat)

    @property
    def size(self) -> int:
        """Scalar parameters of one run."""
        return self.flat.shape[1]

    def _link(self) -> None:
        """Make the per-layer leaves: views into `flat` that autograd can differentiate."""
        self.leaves: dict[str, Tensor] = {}
        start = 0
        for name, shape in self.shapes.items():
            end = start + math.prod(shape)
            view = self.flat[:, start:end].view(self.runs, *shape)
            self.leaves[name] = view.detach().requires_grad_()
            start = end
        names = list(self.leaves)
        # (weight, bias or None) per linear layer, in order: `weight`/`bias` or `layers.k.*`
        self.layers = [
            (self.leaves[n], self.leaves.get(n[: -len("weight")] + "bias"))
            for n in names
            if n.endswith("weight")
        ]
        self.weights = [w for w, _ in self.layers]
        self.grad_rows = torch.empty_like(self.flat)

    def select(self, keep: Sequence[int]) -> None:
        """Keep the runs `keep` only (those still training)."""
        rows = torch.as_tensor(keep, dtype=torch.long, device=self.flat.device)
        self.flat = self.flat[rows]
        self._link()

    def forward(self, x: Tensor) -> Tensor:
        """`[R, B, in]` rows through each run's own model: `[R, B, out]`."""
        last = len(self.layers) - 1
        for k, (weight, bias) in enumerate(self.layers):
            x = BatchedLinear.apply(x, weight, bias)
            if k < last:
                assert self.activation is not None  # a model of several layers is an MLP
                x = self.activation(x)
        return x

    def forward_one(self, run: int, x: Tensor) -> Tensor:
        """Run `run`'s model on its `[B, in]` rows, by the very operations of its `nn.Module`
        (no gradient: for the per-epoch metrics, which then come out as `train`'s)."""
        last = len(self.layers) - 1
        for k, (weight, bias) in enumerate(self.layers):
            x = F.linear(x, weight[run], None if bias is None else bias[run])
            if k < last:
                assert self.activation is not None
                x = self.activation(x)
        return x

    def flat_grad(self, objective: Tensor) -> Tensor:
        """The gradient of every run's objective (`[R]`, summed) as `[R, P]` rows.

        The rows are overwritten by the next call: the optimizer uses them at once."""
        grads = torch.autograd.grad(objective.sum(), list(self.leaves.values()))
        # into the same block every step: a fresh one costs a step more than the copy itself
        return torch.cat([g.reshape(self.runs, -1) for g in grads], dim=1, out=self.grad_rows)

    def parameters_of(self, row: Tensor) -> dict[str, Tensor]:
        """One run's parameters (a row of `flat`) by state_dict name: views of the row."""
        out: dict[str, Tensor] = {}
        start = 0
        for name, shape in self.shapes.items():
            end = start + math.prod(shape)
            out[name] = row[start:end].view(shape)
            start = end
        return out


class BatchedLinear(torch.autograd.Function):
    """`x W^T + b` for each run: `[R, B, in]`, `[R, out, in]`, `[R, out]` -> `[R, B, out]`.

    Autograd would differentiate `baddbmm` to `x^T g` and transpose it, a product with a
    strided operand that is slow on the CPU and lands in the wrong layout; the weight's
    gradient is `g^T x`, computed here in the weight's own layout, as `nn.Linear`'s backward
    computes it for one run.
    """

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        w = weight.transpose(1, 2)
        return torch.bmm(x, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, w)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, weight, _ = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_weight = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(1) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


class DivideGrad(torch.autograd.Function):
    """The identity, whose backward divides the gradient by `n`: the last operation of the
    backward of torch's `binary_cross_entropy_with_logits(..., reduction="mean")`, which a
    mean taken after an unreduced loss would instead apply first, as a product by `1/n`."""

    @staticmethod
    def forward(x: Tensor, n: int) -> Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.n = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad / ctx.n, None


class StackedObjective:
    """`Objective` of fit.py for R runs: each run's data loss plus its own penalty, `[R]`."""

    def __init__(self, loss: str, model: StackedModel, l1: Sequence[float], l2: Sequence[float]):
        self.loss, self.model = loss, model
        self.set_penalty(l1, l2)

    def set_penalty(self, l1: Sequence[float], l2: Sequence[float]) -> None:
        device, dtype = self.model.flat.device, self.model.flat.dtype
        # a penalty that no run has stays out of the computation, as `train` leaves it out
        self.l1 = torch.tensor(l1, dtype=dtype, device=device) if any(l1) else None
        self.l2 = torch.tensor(l2, dtype=dtype, device=device) if any(l2) else None
        self.host_l1, self.host_l2 = list(l1), list(l2)

    def select(self, keep: Sequence[int]) -> None:
        self.set_penalty([self.host_l1[i] for i in keep], [self.host_l2[i] for i in keep])

    def data_loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Each row's loss (`[R, B]`; mse: `[R, B, out]`), unreduced."""
        if self.loss == "mse":
            return F.mse_loss(out, y, reduction="none")
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(out.squeeze(-1), y, reduction="none")
        # rows of classes, as `train` has them: its gradient then comes out bit for bit (with
        # the classes in dim 1 it is twice as fast on the CPU, but rounds otherwise)
        runs, rows, classes = out.shape
        flat = F.cross_entropy(out.reshape(-1, classes), y.reshape(-1), reduction="none")
        return flat.view(runs, rows)

    def l1_term(self) -> Tensor | float:
        if self.l1 is None:
            return 0.0
        return self.l1 * sum(w.abs().flatten(1).sum(1) for w in self.model.weights)

    def l2_term(self) -> Tensor | float:
        if self.l2 is None:
            return 0.0
        return self.l2 * sum(w.square().flatten(1).sum(1) for w in self.model.weights)

    def penalty(self) -> Tensor | float:
        return self.l1_term() + self.l2_term()

    def __call__(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Each run's objective on its batch, in `Objective.backward`'s order of terms (`[R]`):
        one to differentiate, and its value (the same but for bce, see `DivideGrad`)."""
        if self.loss == "bce":
            # torch's bce divides the gradient by the rows last: sum here, divide in DivideGrad
            rows = y.shape[1]
            losses = self.data_loss(DivideGrad.apply(out, rows), y)
            differentiable, value = losses.sum(1), losses.detach().mean(1)
        else:
            differentiable = value = self.data_loss(out, y).flatten(1).mean(1)
        for term in (self.l2_term(), self.l1_term()):
            if isinstance(term, Tensor):  # a penalty no run has is left out, as `train` does
                differentiable = differentiable + term
                value = value + term.detach()
        return differentiable, value

    # --- one run, as `fit.Objective` computes it: for the per-epoch metrics ----------------

    def data_loss_sum(self, out: Tensor, y: Tensor) -> Tensor:
        """One run's data loss summed over its `[B, out]` rows."""
        if self.loss == "mse":
            return F.mse_loss(out, y, reduction="sum")
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(out.squeeze(-1), y, reduction="sum")
        return F.cross_entropy(out, y, reduction="sum")

    def penalty_of(self, run: int) -> Tensor | float:
        l1, l2 = self.host_l1[run], self.host_l2[run]
        weights = [w[run] for w in self.model.weights]
        l1_term = l1 * sum(w.abs().sum() for w in weights) if l1 else 0.0
        l2_term = l2 * sum(w.square().sum() for w in weights) if l2 else 0.0
        return l1_term + l2_term

    def correct(self, out: Tensor, y: Tensor) -> Tensor | None:
        """How many of one run's predictions are right, for the classifiers."""
        if self.loss == "bce":
            return ((out.squeeze(-1) > 0) == (y > 0.5)).sum()
        if self.loss == "cross_entropy":
            return (out.argmax(dim=-1) == y).sum()
        return None
