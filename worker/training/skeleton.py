"""The run skeleton every training loop shares: its options, its timetable, its result.

A loop (fit.py, minimize.py, a sweep's group in group.py) only takes steps; the skeleton says
when to hand the points over (a flush, every `flush_seconds`), when to save the parameters and
take a checkpoint (at a flush, so always at a whole step), and when to stop: when the recorder
asks (a cancel, a shutdown, a lost lease: its `should_stop`), or past the time limit. Between
flushes nothing is fetched from the device, so a step never waits on it (test_no_sync.py).
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from service.spec import costs
from worker.training.errors import Interrupted, TimedOut
from worker.training.pending import Pending
from worker.training.recorder import Recorder

#: the torch dtype of each `dtype` a fit spec may name
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class RunOptions:
    #: seconds between hand-overs of points to the recorder (and looks at should_stop)
    flush_seconds: float = 0.2
    #: seconds between saves of the parameters while the run goes on
    parameters_seconds: float = 2.0
    #: wall-clock seconds the run may take, or None
    time_limit: float | None = None
    #: seconds between checkpoints (taken at a flush, so always at a whole step)
    checkpoint_seconds: float = 5.0
    #: the most values a fit job's trajectory may hold (parameters x (epochs + 1)), or None
    max_path_values: int | None = None


def keeps_trajectory(n_params: int, epochs: int, options: RunOptions) -> bool:
    """Whether a fit run records its parameters after every epoch (API.md section 4)."""
    return costs.no_trajectory(n_params, epochs, options.max_path_values) is None


@dataclass(frozen=True)
class RunResult:
    """How a run that ended well went: the job's `result` (API.md), stored as `as_dict()`."""

    #: the last step's loss and the lowest of every step
    final_loss: float
    best_loss: float
    steps: int
    #: wall-clock seconds, those before a resume included
    duration_s: float
    device: str
    #: the last epoch's metrics (a minimize job has none)
    metrics: dict[str, float | None]
    #: a fit job with manual gradients: how far they are from autograd's
    gradient_check: dict[str, float] | None = None
    #: a minimize job: the point it ended at
    x: list[float] | None = None

    @classmethod
    def of(
        cls, pending: Pending, *, steps: int, cadence: Cadence, device: torch.device, **extra: Any
    ) -> RunResult:
        """The result of a run whose values have all been flushed through `pending`."""
        return cls(
            final_loss=pending.last,
            best_loss=pending.best,
            steps=steps,
            duration_s=cadence.elapsed(),
            device=device_name(device),
            metrics=pending.latest_metrics,
            **extra,
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON the job stores: `gradient_check` and `x` only where the run has them (no
        other field is ever None)."""
        return {name: value for name, value in asdict(self).items() if value is not None}


class Cadence:
    """The timetable of one run (or of a group's runs together), from `start()` on.

    Parameters are saved `periodically` (every `parameters_seconds`, and at the end) or only
    `at_end`: at the last step, or where the run diverged (a minimize job's `x`, whose every
    value is in its trajectory anyway).
    """

    def __init__(
        self,
        options: RunOptions,
        *,
        parameters: Literal["periodically", "at_end"] = "periodically",
    ) -> None:
        self.options = options
        self.saves_periodically = parameters == "periodically"
        #: seconds the run had taken before it was resumed
        self.elapsed_before = 0.0
        self.started = time.monotonic()
        # nothing is due before start(): a hook that fires while the run is built waits
        self.deadline: float | None = None
        self.next_flush = self.next_save = self.next_checkpoint = math.inf

    def start(self) -> None:
        """Start the clocks: the run's first step is about to be taken."""
        now = self.started = time.monotonic()
        limit = self.options.time_limit
        self.deadline = now + limit - self.elapsed_before if limit else None
        self.next_flush = now + self.options.flush_seconds
        self.next_save = now + self.options.parameters_seconds
        self.next_checkpoint = now + self.options.checkpoint_seconds

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def flush_due(self) -> bool:
        return time.monotonic() >= self.next_flush

    def flushed(self) -> None:
        """A flush just ended: the next is due `flush_seconds` from now."""
        self.next_flush = time.monotonic() + self.options.flush_seconds

    def save_due(self, now: float, *, final: bool, diverged: bool = False) -> bool:
        """Whether the flush at `now` saves the parameters; the next save is then timed."""
        if not self.saves_periodically:
            return final or diverged
        if final or now >= self.next_save:
            self.next_save = now + self.options.parameters_seconds
            return True
        return False

    def checkpoint_due(self, now: float, *, stopping: bool) -> bool:
        """Whether the flush at `now` takes a checkpoint: on time, or because the run stops
        (so whoever takes the job next loses nothing); the next one is then timed."""
        if stopping or now >= self.next_checkpoint:
            self.next_checkpoint = now + self.options.checkpoint_seconds
            return True
        return False

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def timed_out(self, step: int, *, detail: str = "") -> TimedOut:
        return TimedOut(
            f"the job passed its time limit of {self.options.time_limit:g} s at step {step}"
            + detail,
            step=step,
        )

    def check_stop(self, recorder: Recorder, step: int) -> None:
        """Raise if the recorder asks the run to stop or the run is past its time limit."""
        if recorder.should_stop():
            raise Interrupted.at(step)
        if self.past_deadline():
            raise self.timed_out(step)


class SingleRun:
    """The skeleton of a run with one recorder (fit, minimize): `flush` hands the pending
    values over, with the parameters and a checkpoint when due, and raises what ends the run.

    A subclass sets `recorder`, `pending`, `cadence` and `step` (the last step taken) and
    says what its parameters and checkpoint are and how its loss diverges.
    """

    recorder: Recorder
    pending: Pending
    cadence: Cadence
    step: int

    def parameters(self) -> bytearray:
        """The parameters now, as a safetensors file (`parameters_file.encode_parameters`)."""
        raise NotImplementedError

    def checkpoint(self) -> bytes:
        """Everything needed to carry on after `self.step`, as bytes to store."""
        raise NotImplementedError

    def diverged(self, step: int) -> Exception:
        """The error for a loss that is not finite at `step`."""
        raise NotImplementedError

    def flush(self, *, final: bool = False) -> None:
        """One device-to-host transfer for every pending value, then whole steps out."""
        chunk, diverged_at = self.pending.drain()
        now = time.monotonic()
        if self.cadence.save_due(now, final=final, diverged=diverged_at is not None):
            chunk.parameters = self.parameters()
        stopping = not final and self.recorder.should_stop()
        if (
            diverged_at is None
            and not final
            and self.cadence.checkpoint_due(now, stopping=stopping)
        ):
            chunk.checkpoint = self.checkpoint()
        self.recorder.record(chunk)
        if diverged_at is not None:
            raise self.diverged(diverged_at)
        self.cadence.flushed()
        if not final:
            self.cadence.check_stop(self.recorder, self.step)


def save_checkpoint(state: dict[str, Any]) -> bytes:
    """A checkpoint is a plain dict of tensors and values, `torch.save`d."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load_checkpoint(raw: bytes, device: torch.device) -> dict[str, Any]:
    # weights_only: a checkpoint is tensors and plain values, never arbitrary objects
    return torch.load(io.BytesIO(raw), map_location=device, weights_only=True)  # type: ignore[no-any-return]


def device_name(device: torch.device) -> str:
    """The device a run trained on, as its result names it (`cuda:0`, not `cuda`)."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)
