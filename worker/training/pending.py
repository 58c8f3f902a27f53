"""Values still on the device, waiting for a flush to turn them into numbers all at once."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from worker.training.recorder import Chunk


class Pending:
    """The losses of consecutive steps, per-epoch metrics and trajectory points not yet sent.

    `drain()` makes one transfer for the losses and one for the points, and returns whole
    steps only: the steps that have a loss. A point or a metric at a later step waits.
    """

    def __init__(self, first_step: int) -> None:
        #: the step of `losses[0]`
        self.first = first_step
        self.losses: list[torch.Tensor] = []
        self.metrics: list[tuple[int, dict[str, torch.Tensor | float]]] = []
        self.points: list[tuple[int, torch.Tensor]] = []
        self.last = math.nan
        self.best = math.inf
        #: per-epoch metrics sent so far, and the latest of them
        self.epochs_sent = 0
        self.latest_metrics: dict[str, float | None] = {}

    def snapshot(self) -> dict[str, Any]:
        """What a checkpoint keeps of the values already sent."""
        return {
            "last": self.last,
            "best": self.best,
            "epochs_sent": self.epochs_sent,
            "latest_metrics": self.latest_metrics,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.last, self.best = snapshot["last"], snapshot["best"]
        self.epochs_sent = snapshot["epochs_sent"]
        self.latest_metrics = snapshot["latest_metrics"]

    def drain(self) -> tuple[Chunk, int | None]:
        """The chunk of whole steps, and the step whose loss was not finite, if one was."""
        losses = torch.stack(self.losses).double().cpu().numpy() if self.losses else np.empty(0)
        return self.drain_fetched(losses)

    def drain_fetched(self, losses: np.ndarray) -> tuple[Chunk, int | None]:
        """`drain`, the pending losses (of the steps from `first` on) being on the host already:
        a vectorised group fetches all its runs' losses at once, then drains each run here."""
        bad = np.flatnonzero(~np.isfinite(losses))
        good = int(bad[0]) if len(bad) else len(losses)
        end = self.first + good  # the first step not to record
        chunk = Chunk(step=end - 1, epoch=0)
        for i, value in enumerate(losses[:good].tolist()):
            chunk.add("loss", self.first + i, value)
        if good:
            self.last = float(losses[good - 1])
            self.best = min(self.best, float(losses[:good].min()))
        # whatever waits for a step after the ones drained (a later step's metric) stays
        after = self.first + len(losses)
        self._drain_metrics(chunk, end, after)
        self._drain_points(chunk, end, after)
        chunk.epoch = self.epochs_sent
        self.first = after
        self.losses = []
        return chunk, (end if len(bad) else None)

    def _drain_metrics(self, chunk: Chunk, end: int, after: int) -> None:
        ready = [(step, m) for step, m in self.metrics if step < end]
        self.metrics = [(step, m) for step, m in self.metrics if step >= after]
        for step, metrics in ready:
            values = {name: float(value) for name, value in metrics.items()}
            finite = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
            for name, value in finite.items():
                chunk.add(name, step, value)
            self.epochs_sent += 1
            self.latest_metrics = {k: v for k, v in finite.items() if k != "lr"}

    def _drain_points(self, chunk: Chunk, end: int, after: int) -> None:
        ready = [(step, p) for step, p in self.points if step < end]
        self.points = [(step, p) for step, p in self.points if step >= after]
        if ready:
            rows = torch.stack([p for _, p in ready]).double().cpu().tolist()
            chunk.trajectory.extend(zip([step for step, _ in ready], rows, strict=True))
