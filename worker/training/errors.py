"""Why a training run stopped before its last epoch."""


class TrainingStopped(Exception):
    """Base of the ways a run ends early; `step` is the last step recorded."""

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


class Diverged(TrainingStopped):
    """The loss became NaN or infinite."""


class Interrupted(TrainingStopped):
    """The recorder asked the run to stop (a cancel, a shutdown, a lost job)."""


class TimedOut(TrainingStopped):
    """The run passed its wall-clock limit."""


class InvalidJob(Exception):
    """The spec cannot run here (a GPU that this worker does not have)."""
