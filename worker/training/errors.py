"""Why a training run stopped before its last step, or could not start.

Every one is a `TrainingError`, one of Descent's own errors (`service.errors.DescentError`);
the worker turns each into how its job ends (worker/outcomes.py), never into an HTTP error.
"""

from __future__ import annotations

from service.errors import DescentError


class TrainingError(DescentError):
    """Base of every error a training run raises on purpose."""


class TrainingStopped(TrainingError):
    """Base of the ways a run ends early; `step` is the last step recorded."""

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


class Diverged(TrainingStopped):
    """The loss became NaN or infinite."""


class Interrupted(TrainingStopped):
    """The recorder asked the run to stop (a cancel, a shutdown, a lost job)."""

    @classmethod
    def at(cls, step: int) -> Interrupted:
        return cls(f"stopped at step {step}", step=step)


class TimedOut(TrainingStopped):
    """The run passed its wall-clock limit."""


class InvalidJob(TrainingError):
    """The spec cannot run here (a GPU that this worker does not have)."""


class InputOverflow(InvalidJob):
    """The job's own numbers overflow its arithmetic before the optimizer moved anything."""


class OutOfMemory(TrainingError):
    """The job needed more memory than its worker may use (type `resources`)."""


def non_finite(step: int, *, first_step: int, what: str, dtype: str) -> TrainingError:
    """The error for a loss that is NaN or infinite at `step`.

    At the first step nothing has been updated yet, so the inputs (the data, the starting
    point) overflow the arithmetic: advice about the learning rate would mislead.
    """
    if step == first_step:
        return InputOverflow(
            f"{what} is not finite at step {step}, before any update: the job's inputs "
            f"overflow {dtype} arithmetic; scale the data (or the starting point) down"
            + (", or use dtype float64" if dtype == "float32" else "")
        )
    return Diverged(
        f"{what} became non-finite at step {step}; try a smaller learning rate"
        + (" or standardised data" if what == "the loss" else ""),
        step=step,
    )
