"""`fit` jobs: a model trained on its data, epoch by epoch, readable top to bottom.

The loop never waits on the device for a loss: each step's loss stays a tensor in `pending`
until a flush (on the run skeleton's timetable, skeleton.py) turns the lot into numbers with
one transfer, checks them for NaN and infinity, and hands whole steps to the recorder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from service.spec import SOLVERS, FitSpec, Penalty, costs
from worker.training import data as data_sources
from worker.training import manual, models, optimizers
from worker.training.errors import InputOverflow, Interrupted, non_finite
from worker.training.parameters_file import encode_parameters
from worker.training.pending import Pending
from worker.training.recorder import Recorder
from worker.training.skeleton import (
    DTYPES,
    Cadence,
    RunOptions,
    RunResult,
    SingleRun,
    keeps_trajectory,
    load_checkpoint,
    save_checkpoint,
)

#: parameters x batch rows from which a step is watched layer by layer for a stop (~1 s of a
#: CPU's work): below it, between the forward and the backward pass is soon enough
WATCH_LAYERS_FROM = 10**9
#: rows of the training set the manual gradients are checked on
GRADIENT_CHECK_ROWS = 4096
#: optimizers whose proximal step applies the l1 penalty, so it stays out of the gradient
PROXIMAL = ("ista", "fista")


def train(
    spec: FitSpec,
    recorder: Recorder,
    *,
    device: torch.device | str = "cpu",
    options: RunOptions | None = None,
    data: data_sources.Dataset | None = None,
    resume: bytes | None = None,
) -> RunResult:
    """Train the spec's model on its data (made from the spec unless given); the job's result.

    With `resume`, a checkpoint an earlier run recorded, it carries on right after that
    checkpoint's step and ends as the uninterrupted run would have.
    """
    run = _Fit(spec, recorder, torch.device(device), options or RunOptions(), data)
    if resume is not None:
        run.restore(load_checkpoint(resume, run.device))
    return run.fit()


class _Fit(SingleRun):
    def __init__(
        self,
        spec: FitSpec,
        recorder: Recorder,
        device: torch.device,
        options: RunOptions,
        data: data_sources.Dataset | None,
    ) -> None:
        self.spec, self.recorder, self.device = spec, recorder, device
        self.cadence = Cadence(options)
        self.dtype = DTYPES[spec.dtype]
        torch.manual_seed(spec.seed)
        data = data or data_sources.load(spec)
        self.x, self.y = self._tensors(data.x_train, data.y_train)
        self.x_val, self.y_val = self._tensors(data.x_val, data.y_val)
        if recorder.should_stop():  # making large data takes a while: a cancel may be waiting
            raise Interrupted("stopped before the first step", step=0)
        self.model = models.build(spec.model, n_in=data.n_features, n_out=data.n_outputs(spec.loss))
        self.model.to(device=device, dtype=self.dtype)
        prox = spec.optimizer.type in PROXIMAL
        self.objective = Objective(spec.loss or "mse", self.model, spec.penalty, prox_l1=prox)
        # one of: an optimizer (and maybe a schedule), or an exact solver
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: torch.optim.lr_scheduler.LRScheduler | None = None
        self.solver: optimizers.Solver | None = None
        self.step_fn = self._step_function()
        self.shuffler = torch.Generator().manual_seed(spec.seed)
        self.pending = Pending(first_step=1)
        self.step = 0
        #: (epochs done, batches done in the current epoch), and the shuffler's state when
        #: the current epoch drew its order: what a resumed run needs to take the same batches
        self.position = (0, 0)
        self.epoch_rng = self.shuffler.get_state()
        self.gradient_check: dict[str, float] | None = None
        widest = max(m.out_features for m in self.model.modules() if isinstance(m, nn.Linear))
        self.eval_rows = costs.eval_rows(widest)
        n_params = sum(p.numel() for p in self.model.parameters())
        self.tracks_path = keeps_trajectory(n_params, spec.epochs, options)
        if n_params * min(spec.batch_size or len(self.x), len(self.x)) >= WATCH_LAYERS_FROM:
            self._watch_every_layer()

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xt = finite_in(torch.as_tensor(x, dtype=self.dtype, device=self.device), "data.x")
        if self.spec.loss == "cross_entropy":
            return xt, torch.as_tensor(y, dtype=torch.long, device=self.device)
        return xt, finite_in(torch.as_tensor(y, dtype=self.dtype, device=self.device), "data.y")

    # --- the loop ---------------------------------------------------------------------

    def fit(self) -> RunResult:
        self.cadence.start()
        if self.step == 0:
            if self.spec.gradients == "manual":
                self.gradient_check = self._gradient_check()
            if self.tracks_path:
                self.pending.points.append((0, self._flat_parameters()))
        first_epoch, skip = self.position
        for epoch in range(first_epoch, self.spec.epochs):
            self._epoch(epoch, skip=skip if epoch == first_epoch else 0)
        self.flush(final=True)
        return RunResult.of(
            self.pending,
            steps=self.step,
            cadence=self.cadence,
            device=self.device,
            gradient_check=self.gradient_check,
        )

    def _epoch(self, epoch: int, *, skip: int) -> None:
        """One pass over the training set, less the `skip` batches trained before a resume."""
        lr = self._lr()
        self.shuffler.set_state(self.epoch_rng)
        for batch, (xb, yb, last_batch) in enumerate(self._batches()):
            if batch < skip:  # resuming mid-epoch: these batches were trained already
                continue
            self.pending.losses.append(self.step_fn(xb, yb))
            self.step += 1
            self.position = (epoch, batch + 1)
            # the step that ends an epoch is flushed only with its epoch metrics
            if not last_batch and self.cadence.flush_due():
                self.flush()
        self._end_epoch(lr)
        self.position = (epoch + 1, 0)
        self.epoch_rng = self.shuffler.get_state()
        if self.cadence.flush_due():
            self.flush()

    # --- one optimizer step -----------------------------------------------------------

    def _step_function(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """A function taking a batch, making one update, returning the loss before it."""
        spec = self.spec
        if spec.optimizer.type in SOLVERS:
            solver = optimizers.build_solver(spec.optimizer, self.model, spec.penalty)
            self.solver = solver

            def solve(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    value = self.objective(self.model(xb), yb)
                solver.step(xb, yb)
                return value

            return solve
        optimizer = optimizers.build(spec.optimizer, self.model, spec.penalty)
        self.schedule = optimizers.build_schedule(spec.schedule, optimizer)
        self.optimizer = optimizer
        by_hand = spec.gradients == "manual"

        def descend(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            def closure() -> torch.Tensor:
                optimizer.zero_grad(set_to_none=True)
                if by_hand:
                    loss = self._manual_backward(xb, yb)
                else:
                    out = self.model(xb)
                    self._watch()  # between a long step's forward and its backward
                    loss = self.objective.backward(out, yb)
                self._watch()  # and before its update
                return loss

            # torch types the closure as returning float; ours returns the loss tensor
            return optimizer.step(closure)  # type: ignore[arg-type,return-value]

        return descend

    def _watch(self) -> None:
        """Stop inside a step that has run past its flush time, if the run is asked to stop.

        Fast steps leave stopping to the next flush, which checkpoints first; a step of seconds
        (a large model or batch) must not hold a cancel up until it ends. The run then ends at
        its last recorded step: the steps still pending are never handed over.
        """
        if self.cadence.flush_due():
            self.cadence.check_stop(self.recorder, self.pending.first - 1)

    def _watch_every_layer(self) -> None:
        """Watch after each layer's forward and each parameter's gradient, for a model whose
        step is long enough that a cancel heard only between passes would wait seconds."""
        for module in self.model.modules():
            if isinstance(module, nn.Linear):
                module.register_forward_hook(lambda *_: self._watch())
        for parameter in self.model.parameters():
            parameter.register_hook(lambda _grad: self._watch())

    def _manual_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        o = self.objective
        return manual.backward(
            self.model, loss=o.loss, l1=o.l1, l2=o.l2, x=x, y=y, l1_in_gradient=not o.prox_l1
        )

    # --- what the skeleton saves --------------------------------------------------------

    def parameters(self) -> bytearray:
        """The model's state as a safetensors file: one copy, taken now, while the run waits."""
        return encode_parameters(self.model.state_dict())

    def checkpoint(self) -> bytes:
        """Everything needed to carry on after `self.step`, as bytes to store."""
        optimizer, schedule = self.optimizer, self.schedule
        solver_state = getattr(self.solver, "state_dict", None)
        extra = {} if self.gradient_check is None else {"gradient_check": self.gradient_check}
        return save_checkpoint(
            {
                "step": self.step,
                "position": self.position,
                "shuffler": self.epoch_rng,
                "torch_rng": torch.get_rng_state(),
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "schedule": schedule.state_dict() if schedule is not None else None,
                "solver": solver_state() if solver_state is not None else None,
                "pending": self.pending.snapshot(),
                "extra": extra,
                "elapsed": self.cadence.elapsed(),
            }
        )

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        if state["solver"] is not None:
            self.solver.load_state_dict(state["solver"])  # type: ignore[union-attr]
        torch.set_rng_state(state["torch_rng"])
        self.epoch_rng = state["shuffler"]
        self.position = tuple(state["position"])  # type: ignore[assignment]
        self.step = state["step"]
        self.pending = Pending(first_step=self.step + 1)
        self.pending.restore(state["pending"])
        self.gradient_check = state["extra"].get("gradient_check")
        self.cadence.elapsed_before = state["elapsed"]

    def diverged(self, step: int) -> Exception:
        return non_finite(step, first_step=1, what="the loss", dtype=self.spec.dtype)

    # --- an epoch's end -----------------------------------------------------------------

    def _lr(self) -> float | None:
        if self.optimizer is None:
            return None
        return float(self.optimizer.param_groups[0]["lr"])

    def _end_epoch(self, lr: float | None) -> None:
        self.pending.metrics.append((self.step, self._epoch_metrics(lr)))
        if self.tracks_path:
            self.pending.points.append((self.step, self._flat_parameters()))
        if self.schedule is not None:
            self.schedule.step()

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
        n, size = len(self.x), self.spec.batch_size
        if size is None or size >= n:
            yield self.x, self.y, True
            return
        x, y = self.x, self.y
        if self.spec.shuffle:
            order = torch.randperm(n, generator=self.shuffler).to(self.device)
            x, y = x[order], y[order]  # one gather per epoch; the batches are then views
        for start in range(0, n, size):
            yield x[start : start + size], y[start : start + size], start + size >= n

    @torch.no_grad()
    def _epoch_metrics(self, lr: float | None) -> dict[str, torch.Tensor | float]:
        metrics: dict[str, torch.Tensor | float] = {} if lr is None else {"lr": lr}
        for prefix, x, y in (("", self.x, self.y), ("val_", self.x_val, self.y_val)):
            if len(x) == 0:
                continue
            loss, correct = self._evaluate(x, y)
            metrics[f"{'train' if not prefix else 'val'}_loss"] = loss
            if correct is not None:
                # a ratio of counts: in float64 whatever the run's dtype (int / int is float32)
                metrics[f"{prefix}accuracy"] = correct.double() / len(x)
        return metrics

    def _evaluate(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The objective over a whole set (in slices, to bound memory), and the right count."""
        total: torch.Tensor | float = 0.0
        correct: torch.Tensor | None = None
        rows = self.eval_rows
        for start in range(0, len(x), rows):
            self._watch()
            out = self.model(x[start : start + rows])
            part_y = y[start : start + rows]
            total = total + self.objective.data_loss(out, part_y, reduction="sum")
            right = self.objective.correct(out, part_y)
            if right is not None:
                correct = right if correct is None else correct + right
        per_row = y[0].numel() if self.spec.loss == "mse" else 1
        loss = total / (len(x) * per_row) + self.objective.penalty()
        assert isinstance(loss, torch.Tensor)
        return loss, correct

    def _flat_parameters(self) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([v.detach().flatten() for v in self.model.state_dict().values()])

    def _gradient_check(self) -> dict[str, float]:
        o = self.objective
        rows = slice(0, GRADIENT_CHECK_ROWS)
        worst = manual.gradient_check(
            self.model,
            loss=o.loss,
            l1=o.l1,
            l2=o.l2,
            x=self.x[rows],
            y=self.y[rows],
            l1_in_gradient=not o.prox_l1,
        )
        return {"max_relative_difference": worst}


class Objective:
    """The data loss plus `l1*sum|W| + l2*sum(W^2)` over the weights (not the biases).

    With a proximal optimizer the l1 term is left out of the gradient (the optimizer's
    soft-thresholding applies it) but stays in the value reported.
    """

    def __init__(self, loss: str, model: nn.Module, penalty: Penalty, *, prox_l1: bool) -> None:
        self.loss = loss
        self.weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
        self.l1, self.l2 = penalty.l1, penalty.l2
        self.prox_l1 = prox_l1

    def data_loss(
        self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        if self.loss == "mse":
            return F.mse_loss(out, y, reduction=reduction)
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(out.squeeze(-1), y, reduction=reduction)
        return F.cross_entropy(out, y, reduction=reduction)

    def l1_term(self) -> torch.Tensor | float:
        return self.l1 * sum(w.abs().sum() for w in self.weights) if self.l1 else 0.0

    def l2_term(self) -> torch.Tensor | float:
        return self.l2 * sum(w.square().sum() for w in self.weights) if self.l2 else 0.0

    def penalty(self) -> torch.Tensor | float:
        return self.l1_term() + self.l2_term()

    def backward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Backpropagate the objective (less l1 if proximal); return its full value."""
        # a zero penalty adds no autograd op: per-step cost shows on tiny batches
        smooth = self.data_loss(out, y)
        if self.l2:
            smooth = smooth + self.l2_term()
        if self.l1 and not self.prox_l1:
            smooth = smooth + self.l1_term()
        smooth.backward()
        value = smooth.detach()
        if self.prox_l1 and self.l1:
            with torch.no_grad():
                value = value + self.l1_term()
        return value

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.data_loss(out, y) + self.penalty()

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """How many predictions are right, for the classifiers."""
        if self.loss == "bce":
            return ((out.squeeze(-1) > 0) == (y > 0.5)).sum()
        if self.loss == "cross_entropy":
            return (out.argmax(dim=-1) == y).sum()
        return None


def finite_in(values: torch.Tensor, name: str) -> torch.Tensor:
    """`values`, or InputOverflow if converting them to the run's dtype overflowed."""
    if values.numel() and not bool(torch.isfinite(values).all()):
        raise InputOverflow(
            f"{name} holds numbers beyond the range of {str(values.dtype).removeprefix('torch.')}"
            f" (largest {torch.finfo(values.dtype).max:.3g}): scale the data down, or use dtype"
            " float64"
        )
    return values
