"""The optimizers of API.md 3.4 for R runs at once, over parameters stacked as rows.

`params` is an `[R, P]` tensor, each row one run's parameters flattened; every
hyper-parameter is a float64 tensor of shape `[R]`, one value a run, applied as an `[R, 1]`
column that broadcasts over the row. Each update is the formula of the `torch.optim` class (or
of our `Momentum`) it stands for, written from torch's single-tensor implementation with the
same operations in the same order, so a row follows the run trained alone to rounding; the
plain optimizer is the ground truth `tests/worker/test_group.py` checks them against.

Derived scalars (`1 - beta`, bias corrections, `lr / bias_correction`) are computed in float64,
as torch computes them in Python floats, and rounded to the parameters' dtype only when used.
Where torch writes `a.add_(b, alpha=s)`, one fused multiply-add in its CPU kernel, this writes
`a.addcmul_(b, s)` with `s` a column, which compiles to the same; `s * b` then an add would
round twice. So on the CPU a row's parameters are those of the run alone, bit for bit, in
float32 too (tests/worker/test_group.py), and a chaotic run does not drift away.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from service import spec as specs

#: the numeric fields of each optimizer spec that may differ between the runs of a group
NUMERIC_FIELDS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr", "momentum", "dampening", "weight_decay"),
    "momentum": ("lr", "beta"),
    "adagrad": ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"),
    "rmsprop": ("lr", "alpha", "eps", "weight_decay", "momentum"),
    "adam": ("lr", "betas", "eps", "weight_decay"),
    "adamw": ("lr", "betas", "eps", "weight_decay"),
}

#: steps whose per-step scalars (bias corrections, decayed rates) are tabled at once
TABLE_STEPS = 256

StackedSpec = specs.SGD | specs.Momentum | specs.Adagrad | specs.RMSprop | specs.Adam | specs.AdamW


class StackedOptimizer:
    """Base: rows of `params`, state as `[R, P]` tensors, hyper-parameters as `[R]` arrays.

    `values` holds the hyper-parameters on the host (what the specs say, so a choice that
    depends on them costs no device sync); `hyper` holds the same on the device, in float64.
    """

    def __init__(self, params: Tensor, values: dict[str, np.ndarray]) -> None:
        self.params = params
        self.values = values
        self.state: dict[str, Tensor] = {}
        #: updates made so far (every run of a group steps together)
        self.steps = 0
        #: per-step scalars of steps `table_start + 1, ...`, `[TABLE_STEPS, R, 1]` each
        self.table: dict[str, Tensor] = {}
        self.table_start = 0
        #: scratch rows, so an update allocates no `[R, P]` tensor of its own
        self.scratch: list[Tensor] = []
        self.refresh()

    def col(self, value: Tensor) -> Tensor:
        """A float64 `[R]` value as an `[R, 1]` column in the parameters' dtype."""
        return value.to(self.params.dtype).unsqueeze(1)

    def any(self, name: str) -> bool:
        """Whether any run has a non-zero `name`."""
        return bool(np.any(self.values[name] != 0))

    def refresh(self) -> None:
        """Put the hyper-parameters on the device, with the columns derived from them alone."""
        device = self.params.device
        self.hyper = {
            name: torch.as_tensor(value, dtype=torch.float64, device=device)
            for name, value in self.values.items()
        }
        self.table = {}
        self.scratch = []

    def step_scalars(self, t: Tensor) -> dict[str, Tensor]:
        """Scalars of steps `t` (float64, `[S, 1]`) for each run: `[S, R]` float64 each."""
        return {}

    def this_step(self) -> dict[str, Tensor]:
        """The scalars of the step about to be made, as `[R, 1]` columns: rows of a table made
        every TABLE_STEPS steps, so a step costs no small ops (nor, on a GPU, a transfer)."""
        k = self.steps - self.table_start
        if not self.table or k >= TABLE_STEPS:
            self.table_start, k = self.steps, 0
            device = self.params.device
            t = torch.arange(1, TABLE_STEPS + 1, dtype=torch.float64, device=device)
            scalars = self.step_scalars((t + self.steps).unsqueeze(1))
            self.table = {name: self.col_table(value) for name, value in scalars.items()}
        return {name: value[k] for name, value in self.table.items()}

    def col_table(self, value: Tensor) -> Tensor:
        return value.to(self.params.dtype).unsqueeze(-1)

    def buffer(self, index: int) -> Tensor:
        """Scratch row-block `index`, made once (and again when the runs change)."""
        while len(self.scratch) <= index:
            self.scratch.append(torch.empty_like(self.params))
        return self.scratch[index]

    def set_lr(self, lr: Sequence[float]) -> None:
        """The runs' learning rates from now on (a schedule's, at the end of an epoch)."""
        self.values["lr"] = np.asarray(lr, dtype=np.float64)
        self.refresh()

    def select(self, keep: Sequence[int], params: Tensor) -> None:
        """Keep the runs (rows) `keep` only; `params` are those rows' parameters."""
        rows = torch.as_tensor(keep, dtype=torch.long, device=params.device)
        self.params = params
        self.values = {name: value[list(keep)] for name, value in self.values.items()}
        self.state = {name: value[rows] for name, value in self.state.items()}
        self.refresh()

    def step(self, grad: Tensor) -> None:
        raise NotImplementedError

    def _decayed(self, grad: Tensor) -> Tensor:
        """`grad + weight_decay*param`, as torch adds an L2 weight decay into the gradient."""
        if not self.any("weight_decay"):
            return grad
        return torch.addcmul(grad, self.params, self.col(self.hyper["weight_decay"]))


class SGD(StackedOptimizer):
    """torch.optim.SGD: `buf <- momentum*buf + (1-dampening)*g` (`buf = g` at the first step),
    then `g + momentum*buf` (nesterov) or `buf`; runs with momentum 0 take plain `g`."""

    def __init__(self, params: Tensor, values: dict[str, np.ndarray], *, nesterov: bool) -> None:
        self.nesterov = nesterov
        super().__init__(params, values)

    def refresh(self) -> None:
        super().refresh()
        h = self.hyper
        self.has_momentum = (h["momentum"] != 0).unsqueeze(1)
        self.all_momentum = bool(np.all(self.values["momentum"] != 0))
        self.momentum = self.col(h["momentum"])
        self.undamped = self.col(1.0 - h["dampening"])
        self.neg_lr = self.col(-h["lr"])

    def step(self, grad: Tensor) -> None:
        grad = self._decayed(grad)
        direction = grad
        if self.any("momentum"):
            buf = self.state.get("momentum_buffer")
            if buf is None:
                buf = self.state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(self.momentum).addcmul_(grad, self.undamped)
            direction = torch.addcmul(grad, buf, self.momentum) if self.nesterov else buf
            if not self.all_momentum:
                direction = torch.where(self.has_momentum, direction, grad)
        self.params.addcmul_(direction, self.neg_lr)
        self.steps += 1


class Momentum(StackedOptimizer):
    """Ours: `v <- beta*v + (1-beta)*g`, `theta <- theta - lr*v`, from `v = 0`."""

    def refresh(self) -> None:
        super().refresh()
        self.beta = self.col(self.hyper["beta"])
        self.one_minus_beta = self.col(1.0 - self.hyper["beta"])
        self.neg_lr = self.col(-self.hyper["lr"])

    def step(self, grad: Tensor) -> None:
        velocity = self.state.get("velocity")
        if velocity is None:
            velocity = self.state["velocity"] = torch.zeros_like(self.params)
        velocity.mul_(self.beta).addcmul_(grad, self.one_minus_beta)
        self.params.addcmul_(velocity, self.neg_lr)
        self.steps += 1


class Adagrad(StackedOptimizer):
    """torch.optim.Adagrad: `sum += g^2`, `theta -= clr * g / (sqrt(sum) + eps)`,
    `clr = lr / (1 + (t-1)*lr_decay)`, the sum starting at `initial_accumulator_value`."""

    def __init__(self, params: Tensor, values: dict[str, np.ndarray]) -> None:
        super().__init__(params, values)
        start = self.col(self.hyper["initial_accumulator_value"])
        self.state["sum"] = start.expand_as(params).clone()

    def refresh(self) -> None:
        super().refresh()
        self.eps = self.col(self.hyper["eps"])

    def step_scalars(self, t: Tensor) -> dict[str, Tensor]:
        h = self.hyper
        return {"neg_clr": -(h["lr"] / (1.0 + (t - 1.0) * h["lr_decay"]))}

    def step(self, grad: Tensor) -> None:
        neg_clr = self.this_step()["neg_clr"]
        self.steps += 1
        grad = self._decayed(grad)
        state_sum = self.state["sum"]
        state_sum.addcmul_(grad, grad)
        std = torch.sqrt(state_sum, out=self.buffer(0)).add_(self.eps)
        self.params.addcdiv_(torch.mul(grad, neg_clr, out=self.buffer(1)), std)


class RMSprop(StackedOptimizer):
    """torch.optim.RMSprop: `s <- alpha*s + (1-alpha)*g^2`, the average of `g` subtracted when
    centered, `buf <- momentum*buf + g/(sqrt(s)+eps)` and `theta -= lr*buf` with momentum,
    else `theta -= lr*g/(sqrt(s)+eps)`."""

    def __init__(self, params: Tensor, values: dict[str, np.ndarray], *, centered: bool) -> None:
        self.centered = centered
        super().__init__(params, values)
        self.state["square_avg"] = torch.zeros_like(params)
        if centered:
            self.state["grad_avg"] = torch.zeros_like(params)
        if self.any("momentum"):
            self.state["momentum_buffer"] = torch.zeros_like(params)

    def refresh(self) -> None:
        super().refresh()
        h = self.hyper
        self.alpha = self.col(h["alpha"])
        self.one_minus_alpha = self.col(1.0 - h["alpha"])
        self.eps = self.col(h["eps"])
        self.momentum = self.col(h["momentum"])
        self.has_momentum = (h["momentum"] != 0).unsqueeze(1)
        self.all_momentum = bool(np.all(self.values["momentum"] != 0))
        self.neg_lr = self.col(-h["lr"])

    def step(self, grad: Tensor) -> None:
        grad = self._decayed(grad)
        square_avg = self.state["square_avg"]
        square_avg.mul_(self.alpha).addcmul_(grad * self.one_minus_alpha, grad)
        if self.centered:
            grad_avg = self.state["grad_avg"]
            grad_avg.lerp_(grad, self.one_minus_alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(self.eps)
        if "momentum_buffer" not in self.state:
            self.params.addcdiv_(grad * self.neg_lr, avg)
        else:
            buf = self.state["momentum_buffer"]
            buf.mul_(self.momentum).addcdiv_(grad, avg)
            if self.all_momentum:
                self.params.addcmul_(buf, self.neg_lr)
            else:  # the runs with momentum 0 take torch's plain step, which rounds otherwise
                with_momentum = torch.addcmul(self.params, buf, self.neg_lr)
                plain = torch.addcdiv(self.params, grad * self.neg_lr, avg)
                self.params.copy_(torch.where(self.has_momentum, with_momentum, plain))
        self.steps += 1


class Adam(StackedOptimizer):
    """torch.optim.Adam, or AdamW with `decoupled` weight decay (`theta *= 1 - lr*wd` first)."""

    def __init__(
        self, params: Tensor, values: dict[str, np.ndarray], *, amsgrad: bool, decoupled: bool
    ) -> None:
        self.amsgrad, self.decoupled = amsgrad, decoupled
        super().__init__(params, values)
        self.state["exp_avg"] = torch.zeros_like(params)
        self.state["exp_avg_sq"] = torch.zeros_like(params)
        if amsgrad:
            self.state["max_exp_avg_sq"] = torch.zeros_like(params)

    def refresh(self) -> None:
        super().refresh()
        h = self.hyper
        self.one_minus_beta1 = self.col(1.0 - h["beta1"])
        self.beta2 = self.col(h["beta2"])
        self.one_minus_beta2 = self.col(1.0 - h["beta2"])
        self.eps = self.col(h["eps"])
        self.decay = self.col(1.0 - h["lr"] * h["weight_decay"])

    def step_scalars(self, t: Tensor) -> dict[str, Tensor]:
        h = self.hyper
        return {
            "neg_step_size": -(h["lr"] / (1.0 - h["beta1"] ** t)),
            "bias_correction2_sqrt": (1.0 - h["beta2"] ** t).sqrt(),
        }

    def step(self, grad: Tensor) -> None:
        scalars = self.this_step()
        self.steps += 1
        params = self.params
        if self.any("weight_decay"):
            if self.decoupled:
                params.mul_(self.decay)
            else:
                grad = self._decayed(grad)
        exp_avg, exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]
        exp_avg.lerp_(grad, self.one_minus_beta1)
        scaled = torch.mul(grad, self.one_minus_beta2, out=self.buffer(0))
        exp_avg_sq.mul_(self.beta2).addcmul_(scaled, grad)
        second = exp_avg_sq
        if self.amsgrad:
            second = self.state["max_exp_avg_sq"]
            torch.maximum(second, exp_avg_sq, out=second)
        denom = torch.sqrt(second, out=self.buffer(1))
        denom.div_(scalars["bias_correction2_sqrt"]).add_(self.eps)
        step = torch.mul(exp_avg, scalars["neg_step_size"], out=self.buffer(0))
        params.addcdiv_(step, denom)


def hyper_parameters(optimizers: Sequence[StackedSpec]) -> dict[str, np.ndarray]:
    """Each numeric field as a float64 `[R]` array (Adam's `betas` as `beta1` and `beta2`)."""
    kind = optimizers[0].type
    columns: dict[str, list[float]] = {}
    for spec in optimizers:
        for name in NUMERIC_FIELDS[kind]:
            value = getattr(spec, name)
            if name == "betas":
                columns.setdefault("beta1", []).append(float(value[0]))
                columns.setdefault("beta2", []).append(float(value[1]))
            else:
                columns.setdefault(name, []).append(float(value))
    return {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}


def build(optimizers: Sequence[StackedSpec], params: Tensor) -> StackedOptimizer:
    """The vectorised optimizer for specs of one type (their flags equal), over `params`."""
    first = optimizers[0]
    values = hyper_parameters(optimizers)
    if isinstance(first, specs.SGD):
        return SGD(params, values, nesterov=first.nesterov)
    if isinstance(first, specs.Momentum):
        return Momentum(params, values)
    if isinstance(first, specs.Adagrad):
        return Adagrad(params, values)
    if isinstance(first, specs.RMSprop):
        return RMSprop(params, values, centered=first.centered)
    decoupled = isinstance(first, specs.AdamW)
    return Adam(params, values, amsgrad=first.amsgrad, decoupled=decoupled)
