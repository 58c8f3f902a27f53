"""A sweep's group: runs that train together, as one batched computation (vectorised).

Runs whose specs have the same `group_key` share the model shape, the data source, the loss,
the batching and the optimizer type; they differ only in numeric hyper-parameters and seeds.
`train_many` trains them as R rows of one stacked model (`stacked_model.StackedModel`): one
batched forward and backward per step for all of them, one vectorised optimizer update
(`optimizers.vectorised`), and each run's curve, metrics, trajectory and parameters handed to
its own recorder in the chunks `train` would hand it, on the run skeleton's timetable
(skeleton.py). Each row starts from the parameters `train` gives its seed, takes the batches
`train` gives its seed, and makes the same operations, so each run's curve is the run trained
alone (tests/worker/test_group.py): on the CPU with one torch thread its parameters are the
same bit for bit, in float32 too, and its losses differ in the last bit at most (the order of
a batch mean's sum); with more threads, or on a GPU, the matrix products may round otherwise,
as they may for `train` itself.

What vectorises (`group_key` is None otherwise):
- fit jobs with autograd gradients (manual gradients come with a gradient check per run);
- the optimizers sgd, momentum, adagrad, rmsprop, adam, adamw: not the lasso methods ista,
  fista, coordinate_descent and admm, whose steps are not one gradient update;
- any model, loss, data source and schedule. The seed may differ even where the data depend
  on it: synthetic `linear` and `classification` data are made per seed (and stored once per
  distinct seed); every run has its own validation split and batch order from its seed.

Not done here: checkpoints. A group that is interrupted (a worker shutting down) is retried
from the start, run by run or as a group: nothing of it is resumed. A run ends on its own
when its loss becomes non-finite (Diverged) or its recorder asks it to stop (Interrupted);
the others go on. The time limit applies to the group's wall-clock time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from service.spec import FitSpec, MinimizeSpec, costs
from worker.training import optimizers
from worker.training.errors import Interrupted, non_finite
from worker.training.group_data import Epoch, GroupData
from worker.training.optimizers import vectorised
from worker.training.parameters_file import encode_parameters
from worker.training.pending import Pending
from worker.training.recorder import Recorder
from worker.training.skeleton import DTYPES, Cadence, RunOptions, RunResult, keeps_trajectory
from worker.training.stacked_model import StackedModel, StackedObjective

#: a run's end: `train`'s result, or the exception `train` would have raised (Diverged,
#: Interrupted, TimedOut; any other if its recorder failed)
Outcome = RunResult | Exception


def group_key(spec: FitSpec | MinimizeSpec) -> str | None:
    """The key under which specs train together in `train_many`, or None if this one cannot.

    Specs with equal keys are equal but for `name`, `seed`, the optimizer's numeric fields,
    `penalty` and the schedule's numeric fields. The key is a digest of what must be equal.
    """
    if not isinstance(spec, FitSpec) or spec.gradients != "autograd":
        return None
    kind = spec.optimizer.type
    if kind not in vectorised.NUMERIC_FIELDS:
        return None
    fields = spec.model_dump(mode="json", exclude={"name", "seed", "penalty"})
    numeric = vectorised.NUMERIC_FIELDS[kind]
    fields["optimizer"] = {k: v for k, v in fields["optimizer"].items() if k not in numeric}
    if fields["schedule"] is not None:
        fields["schedule"] = {"type": fields["schedule"]["type"]}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def train_many(
    specs: Sequence[FitSpec],
    recorders: Sequence[Recorder],
    *,
    device: torch.device | str = "cpu",
    options: RunOptions | None = None,
    arrays: tuple[np.ndarray, np.ndarray] | None = None,
    on_done: Callable[[int, Outcome], None] | None = None,
) -> list[Outcome]:
    """Train specs of one `group_key` together, each recording to its own recorder.

    The i-th outcome is what `train(specs[i], recorders[i], ...)` would return, or the
    exception it would raise, as a value: one run's end does not end the others. `arrays` are
    the uploaded dataset's (x, y) for `dataset` data, shared by every run. `on_done(i, outcome)`
    is called as soon as run i ends, so a caller can finish its job without waiting for the
    group. An error that is no run's own (a bug, the device out of memory) is raised.
    """
    if len(specs) != len(recorders):
        raise ValueError(f"{len(specs)} specs but {len(recorders)} recorders")
    if not specs:
        return []
    keys = {group_key(spec) for spec in specs}
    if None in keys or len(keys) != 1:
        raise ValueError("train_many needs specs of one group_key (see group_key)")
    group = _Group(specs, recorders, torch.device(device), options or RunOptions(), arrays)
    group.on_done = on_done
    return group.fit()


class _LearningRates:
    """Each run's learning rate, epoch by epoch: torch's own scheduler of the spec, stepping a
    stand-in optimizer, so the rates are torch's to the last bit."""

    def __init__(self, specs: Sequence[FitSpec]) -> None:
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedules: list[Any] = []
        for spec in specs:
            lr = spec.optimizer.lr  # type: ignore[union-attr]  # group_key admits these only
            stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
            self.schedules.append(optimizers.build_schedule(spec.schedule, stand_in))
            stand_in.step()  # no gradient: changes nothing, but the scheduler sees a step first
            self.optimizers.append(stand_in)

    def current(self) -> list[float]:
        return [float(o.param_groups[0]["lr"]) for o in self.optimizers]

    def step(self) -> None:
        for schedule in self.schedules:
            if schedule is not None:
                schedule.step()

    def select(self, keep: Sequence[int]) -> None:
        self.optimizers = [self.optimizers[i] for i in keep]
        self.schedules = [self.schedules[i] for i in keep]


# --- the loop -----------------------------------------------------------------------------


class _Run:
    """One run of the group: its recorder, its values waiting for a flush, its shuffler."""

    def __init__(self, index: int, spec: FitSpec, recorder: Recorder) -> None:
        self.index, self.spec, self.recorder = index, spec, recorder
        self.pending = Pending(first_step=1)
        self.shuffler = torch.Generator().manual_seed(spec.seed)
        self.outcome: Outcome | None = None


class _Group:
    def __init__(
        self,
        specs: Sequence[FitSpec],
        recorders: Sequence[Recorder],
        device: torch.device,
        options: RunOptions,
        arrays: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        first = self.spec = specs[0]
        self.device = device
        # no checkpoints: a group that is stopped starts again (see the module's docstring)
        self.cadence = Cadence(options)
        self.dtype = DTYPES[first.dtype]
        self.data = GroupData(specs, device, self.dtype, arrays)
        self.model = StackedModel(
            specs, n_in=self.data.n_features, n_out=self.data.n_out, device=device, dtype=self.dtype
        )
        self.objective = StackedObjective(
            first.loss or "mse",
            self.model,
            [s.penalty.l1 for s in specs],
            [s.penalty.l2 for s in specs],
        )
        self.optimizer = vectorised.build(
            [s.optimizer for s in specs],  # type: ignore[misc]  # group_key admits these only
            self.model.flat,
        )
        self.rates = _LearningRates(specs)
        self.runs = [_Run(i, s, r) for i, (s, r) in enumerate(zip(specs, recorders, strict=True))]
        self.all_runs = list(self.runs)
        self.on_done: Callable[[int, Outcome], None] | None = None
        # values of every run still training, waiting for the next flush
        self.losses: list[Tensor] = []
        self.metrics: list[tuple[int, list[str], Tensor, list[float]]] = []
        self.points: list[tuple[int, Tensor]] = []
        self.step = 0
        self.tracks_path = keeps_trajectory(self.model.size, first.epochs, options)
        self.epoch_plan: Epoch | None = None

    def fit(self) -> list[Outcome]:
        self.cadence.start()
        if self.tracks_path:
            self.points.append((0, self.model.flat.clone()))
        n, size = self.data.n_train, self.spec.batch_size
        # as `train` batches: the whole training set (and no shuffle drawn) if a batch covers it
        self.full_batch = size is None or size >= n
        self.bounds = (
            [(0, n)]
            if size is None or self.full_batch
            else [(s, s + size) for s in range(0, n, size)]
        )
        for _ in range(self.spec.epochs):
            if not self._epoch():
                break
        if self.runs:
            self._flush(final=True)
        return [run.outcome for run in self.all_runs]  # type: ignore[misc]  # all have ended

    def _epoch(self) -> bool:
        """One pass over the training set by every run still training; False once none is."""
        self.epoch_plan = self.data.epoch(None if self.full_batch else self._orders())
        for batch, (start, end) in enumerate(self.bounds):
            xb, yb = self.epoch_plan.batch(start, end)
            self.losses.append(self._step(xb, yb))
            self.step += 1
            # the step that ends an epoch is flushed only with its epoch metrics
            if batch < len(self.bounds) - 1 and self.cadence.flush_due():
                self._flush()
                if not self.runs:
                    return False
        self._end_epoch()
        if self.cadence.flush_due():
            self._flush()
        return bool(self.runs)

    def _orders(self) -> Tensor | None:
        """Each run's batch order for this epoch, drawn from its own shuffler as `train` does."""
        if not self.spec.shuffle:
            return None
        n = self.data.n_train
        orders = [torch.randperm(n, generator=run.shuffler) for run in self.runs]
        return torch.stack(orders).to(self.device)

    def _step(self, xb: Tensor, yb: Tensor) -> Tensor:
        """One update of every run; their objectives before it, `[R]`."""
        objective, value = self.objective(self.model.forward(xb), yb)
        grad = self.model.flat_grad(objective)
        with torch.no_grad():
            self.optimizer.step(grad)
        return value.detach()

    def _end_epoch(self) -> None:
        # the rates the epoch trained with: they change only below (and runs may have left)
        names, values = self._epoch_metrics()
        self.metrics.append((self.step, names, values, self.rates.current()))
        if self.tracks_path:
            self.points.append((self.step, self.model.flat.clone()))
        self.rates.step()
        self.optimizer.set_lr(self.rates.current())

    # --- per-epoch metrics ---------------------------------------------------------------

    @torch.no_grad()
    def _epoch_metrics(self) -> tuple[list[str], Tensor]:
        """`train_loss`, `accuracy`, `val_loss`, `val_accuracy` where they apply: `[k, R]`.

        Run by run, by the operations `train` evaluates with: a batched matmul of a whole set
        is slower on the CPU than one matmul a run, and this is once an epoch, not a step.
        """
        names: list[str] = []
        values: list[list[Tensor]] = [[] for _ in self.runs]
        for prefix, part, n in (("", "train", self.data.n_train), ("val_", "val", self.data.n_val)):
            if n == 0:
                continue
            names.append(f"{part}_loss")
            if self.spec.loss != "mse":
                names.append(f"{prefix}accuracy")
            for run, row in enumerate(values):
                loss, correct = self._evaluate(run, part, n)
                row.append(loss.double())
                if correct is not None:
                    # a ratio of counts: in float64 whatever the run's dtype
                    row.append(correct.double() / n)
        return names, torch.stack([torch.stack(row) for row in values], dim=1)

    def _evaluate(self, run: int, part: str, n: int) -> tuple[Tensor, Tensor | None]:
        """One run's objective over a whole set (in slices, to bound memory), and right count."""
        total: Tensor | float = 0.0
        correct: Tensor | None = None
        for start in range(0, n, costs.EVAL_ROWS):
            end = min(start + costs.EVAL_ROWS, n)
            out = self.model.forward_one(run, self.data.features_of(run, part, start, end))
            y = self.data.y[part][run, start:end]
            total = total + self.objective.data_loss_sum(out, y)
            right = self.objective.correct(out, y)
            if right is not None:
                correct = right if correct is None else correct + right
        per_row = self.data.n_out if self.spec.loss == "mse" else 1
        loss = total / (n * per_row) + self.objective.penalty_of(run)
        assert isinstance(loss, Tensor)
        return loss, correct

    # --- handing points over --------------------------------------------------------------

    def _flush(self, *, final: bool = False) -> None:
        """One transfer each for the losses, metrics and points of every run, then each run's
        whole steps to its recorder; the runs that end here leave the group."""
        losses = torch.stack(self.losses).double().cpu().numpy() if self.losses else None
        self.losses = []
        self._hand_out_metrics_and_points()
        saving = self.cadence.save_due(time.monotonic(), final=final)
        host = self.model.flat.detach().cpu() if saving else None
        for i, run in enumerate(self.runs):
            column = losses[:, i] if losses is not None else np.empty(0)
            self._hand_over(run, column, host[i] if host is not None else None, final=final)
        if not final and self.cadence.past_deadline():
            detail = f" (trained in a vectorised group of {len(self.all_runs)} runs)"
            for run in self.runs:
                if run.outcome is None:
                    self._end(run, self.cadence.timed_out(self.step, detail=detail))
        self._leave()
        self.cadence.flushed()

    def _hand_over(
        self, run: _Run, losses: np.ndarray, parameters: Tensor | None, *, final: bool
    ) -> None:
        """One run's whole steps (and its parameters, a row of `flat`) to its recorder; the
        run ends if its loss diverged, its recorder asks it to stop or failed, or it is done."""
        try:
            chunk, diverged_at = run.pending.drain_fetched(losses)
            if parameters is not None:
                chunk.parameters = encode_parameters(self.model.parameters_of(parameters))
            stopping = not final and run.recorder.should_stop()
            run.recorder.record(chunk)
        except Exception as exc:  # noqa: BLE001 - a recorder's failure ends its run only
            self._end(run, exc)
            return
        if diverged_at is not None:
            dtype = run.spec.dtype
            self._end(run, non_finite(diverged_at, first_step=1, what="the loss", dtype=dtype))
        elif stopping:
            self._end(run, Interrupted.at(self.step))
        elif final:
            result = RunResult.of(
                run.pending, steps=self.step, cadence=self.cadence, device=self.device
            )
            self._end(run, result)

    def _hand_out_metrics_and_points(self) -> None:
        """Give each run its metrics and trajectory points, fetched in one transfer each."""
        if self.metrics:
            values = torch.stack([v for _, _, v, _ in self.metrics]).cpu().numpy()
            for (step, names, _, lrs), table in zip(self.metrics, values, strict=True):
                for i, run in enumerate(self.runs):
                    metrics: dict[str, Tensor | float] = {"lr": lrs[i]}
                    metrics.update((name, float(table[k, i])) for k, name in enumerate(names))
                    run.pending.metrics.append((step, metrics))
            self.metrics = []
        if self.points:
            points = torch.stack([p for _, p in self.points]).cpu()
            for (step, _), rows in zip(self.points, points, strict=True):
                for i, run in enumerate(self.runs):
                    run.pending.points.append((step, rows[i]))
            self.points = []

    def _end(self, run: _Run, outcome: Outcome) -> None:
        run.outcome = outcome
        if self.on_done is not None:
            self.on_done(run.index, outcome)

    def _leave(self) -> None:
        """Drop the runs that have ended from every stacked tensor."""
        keep = [i for i, run in enumerate(self.runs) if run.outcome is None]
        if len(keep) == len(self.runs):
            return
        self.runs = [self.runs[i] for i in keep]
        if not keep:
            return
        self.model.select(keep)
        self.objective.select(keep)
        self.optimizer.select(keep, self.model.flat)
        self.rates.select(keep)
        self.data.select(keep)
        if self.epoch_plan is not None:
            self.epoch_plan.select(keep)
