"""The training loop for `fit` jobs, readable top to bottom.

The loop never waits on the device for a loss: each step's loss stays a tensor in `pending`
until a flush (every `flush_seconds`) turns the lot into numbers with one transfer, checks
them for NaN and infinity, and hands whole steps to the recorder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from service.schemas.spec import FitSpec, Penalty
from worker.training import data as data_sources
from worker.training import models, optimizers
from worker.training.errors import Diverged, Interrupted, TimedOut
from worker.training.recorder import Chunk, Recorder

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: rows evaluated at once for the per-epoch metrics over a whole set
EVAL_ROWS = 65_536


@dataclass(frozen=True)
class RunOptions:
    #: seconds between hand-overs of points to the recorder (and looks at should_stop)
    flush_seconds: float = 0.2
    #: seconds between saves of the parameters while the run goes on
    parameters_seconds: float = 2.0
    #: wall-clock seconds the run may take, or None
    time_limit: float | None = None


def train(
    spec: FitSpec,
    recorder: Recorder,
    *,
    device: torch.device | str = "cpu",
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Train the spec's model on its data; returns the job's `result`."""
    return _Run(spec, recorder, torch.device(device), options or RunOptions()).fit()


def device_name(device: torch.device) -> str:
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


class Objective:
    """The data loss plus `l1*sum|W| + l2*sum(W^2)` over the weights (not the biases)."""

    def __init__(self, loss: str, model: nn.Module, penalty: Penalty) -> None:
        self.loss = loss
        self.weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
        self.l1, self.l2 = penalty.l1, penalty.l2

    def data_loss(
        self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        if self.loss == "mse":
            return F.mse_loss(out, y, reduction=reduction)
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(out.squeeze(-1), y, reduction=reduction)
        return F.cross_entropy(out, y, reduction=reduction)

    def penalty(self) -> torch.Tensor | float:
        total: torch.Tensor | float = 0.0
        if self.l1:
            total = total + self.l1 * sum(w.abs().sum() for w in self.weights)
        if self.l2:
            total = total + self.l2 * sum(w.square().sum() for w in self.weights)
        return total

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = self.data_loss(out, y)
        if self.l1 or self.l2:
            value = value + self.penalty()
        return value

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """How many predictions are right, for the classifiers."""
        if self.loss == "bce":
            return ((out.squeeze(-1) > 0) == (y > 0.5)).sum()
        if self.loss == "cross_entropy":
            return (out.argmax(dim=-1) == y).sum()
        return None


class _Run:
    def __init__(
        self, spec: FitSpec, recorder: Recorder, device: torch.device, options: RunOptions
    ) -> None:
        self.spec, self.recorder, self.device, self.options = spec, recorder, device, options
        self.dtype = DTYPES[spec.dtype]
        torch.manual_seed(spec.seed)
        data = data_sources.load(spec)
        self.x, self.y = self._tensors(data.x_train, data.y_train)
        self.x_val, self.y_val = self._tensors(data.x_val, data.y_val)
        n_out = (
            data.n_classes
            if spec.loss == "cross_entropy"
            else (1 if spec.loss == "bce" else int(data.y_train.shape[1]))
        )
        self.model = models.build(spec.model, n_in=data.n_features, n_out=n_out or 1).to(
            device=device, dtype=self.dtype
        )
        self.objective = Objective(spec.loss or "mse", self.model, spec.penalty)
        self.optimizer = optimizers.build(spec.optimizer, self.model.parameters())
        self.schedule = optimizers.build_schedule(spec.schedule, self.optimizer)
        self.shuffler = torch.Generator().manual_seed(spec.seed)
        # losses of steps not yet flushed, and per-epoch metrics waiting with them
        self.pending: list[torch.Tensor] = []
        self.pending_metrics: list[tuple[int, dict[str, torch.Tensor | float]]] = []
        self.step = 0
        self.epoch = 0
        #: epochs whose metrics have gone to the recorder
        self.recorded_epochs = 0
        self.best = math.inf
        self.last = math.nan
        self.metrics: dict[str, float | None] = {}

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xt = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if self.spec.loss == "cross_entropy":
            return xt, torch.as_tensor(y, dtype=torch.long, device=self.device)
        return xt, torch.as_tensor(y, dtype=self.dtype, device=self.device)

    # --- the loop ---------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        started = time.monotonic()
        self.deadline = started + self.options.time_limit if self.options.time_limit else None
        self.next_flush = started + self.options.flush_seconds
        self.next_save = started + self.options.parameters_seconds
        model, optimizer, objective = self.model, self.optimizer, self.objective
        for epoch in range(1, self.spec.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            for xb, yb, last_batch in self._batches():
                optimizer.zero_grad(set_to_none=True)
                loss = objective(model(xb), yb)
                loss.backward()
                optimizer.step()
                self.pending.append(loss.detach())
                self.step += 1
                # the step that ends an epoch is flushed only with its epoch metrics
                if not last_batch and time.monotonic() >= self.next_flush:
                    self._flush()
            self.pending_metrics.append((self.step, self._epoch_metrics(lr)))
            if self.schedule is not None:
                self.schedule.step()
            self.epoch = epoch
            if time.monotonic() >= self.next_flush:
                self._flush()
        self._flush(final=True)
        return {
            "final_loss": self.last,
            "best_loss": self.best,
            "steps": self.step,
            "duration_s": time.monotonic() - started,
            "device": device_name(self.device),
            "metrics": self.metrics,
        }

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
    def _epoch_metrics(self, lr: float) -> dict[str, torch.Tensor | float]:
        metrics: dict[str, torch.Tensor | float] = {"lr": lr}
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
        for start in range(0, len(x), EVAL_ROWS):
            out = self.model(x[start : start + EVAL_ROWS])
            part_y = y[start : start + EVAL_ROWS]
            total = total + self.objective.data_loss(out, part_y, reduction="sum")
            right = self.objective.correct(out, part_y)
            if right is not None:
                correct = right if correct is None else correct + right
        per_row = y[0].numel() if self.spec.loss == "mse" else 1
        loss = total / (len(x) * per_row) + self.objective.penalty()
        assert isinstance(loss, torch.Tensor)
        return loss, correct

    # --- handing points over ----------------------------------------------------------

    def _flush(self, *, final: bool = False) -> None:
        """One device-to-host transfer for every pending loss, then whole steps out."""
        first = self.step - len(self.pending) + 1
        losses = torch.stack(self.pending).double().cpu().numpy() if self.pending else np.empty(0)
        self.pending = []
        bad = np.flatnonzero(~np.isfinite(losses))
        end = first + (int(bad[0]) if len(bad) else len(losses))  # first step not to record
        chunk = Chunk(step=end - 1, epoch=0)
        for i, value in enumerate(losses[: end - first].tolist()):
            chunk.add("loss", first + i, value)
        if end > first:
            self.last = float(losses[end - first - 1])
            self.best = min(self.best, float(losses[: end - first].min()))
        self._add_metrics(chunk, end)
        chunk.epoch = self.recorded_epochs
        if final or time.monotonic() >= self.next_save:
            chunk.parameters = self._parameters()
            self.next_save = time.monotonic() + self.options.parameters_seconds
        if len(bad):
            self.recorder.record(chunk)
            raise Diverged(
                f"the loss became {losses[bad[0]]} at step {end}; "
                "try a smaller learning rate or standardised data",
                step=end,
            )
        self.recorder.record(chunk)
        self.next_flush = time.monotonic() + self.options.flush_seconds
        if not final and self.recorder.should_stop():
            raise Interrupted(f"stopped at step {self.step}", step=self.step)
        if not final and self.deadline is not None and time.monotonic() > self.deadline:
            raise TimedOut(
                f"the job passed its time limit of {self.options.time_limit:g} s at step "
                f"{self.step}",
                step=self.step,
            )

    def _add_metrics(self, chunk: Chunk, end: int) -> None:
        """Per-epoch points at the steps that end epochs, up to (not including) `end`."""
        for step, metrics in self.pending_metrics:
            if step >= end:
                break
            self.recorded_epochs += 1
            values = {k: float(v) for k, v in metrics.items()}
            for name, value in values.items():
                chunk.add(name, step, value if math.isfinite(value) else None)
            self.metrics = {
                k: (v if math.isfinite(v) else None) for k, v in values.items() if k != "lr"
            }
        self.pending_metrics = [(s, m) for s, m in self.pending_metrics if s >= end]

    def _parameters(self) -> dict[str, Any]:
        return {k: v.detach().cpu().tolist() for k, v in self.model.state_dict().items()}
