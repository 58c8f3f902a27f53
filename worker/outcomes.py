"""How a claimed job ends: its run's outcome, typed, and the one store call that records it.

A run succeeds (with its result), fails (with an error `type` and message, API.md), is
cancelled, is handed back to the queue (its worker is stopping: it resumes from its latest
checkpoint), or is lost (no longer this worker's job: nothing is left to record).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from service.schemas.jobs import JobStatus
from service.spec import over_budget
from service.store import job_queue
from worker import memory
from worker.training.errors import Diverged, Interrupted, InvalidJob, TimedOut
from worker.training.skeleton import RunResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Succeeded:
    result: RunResult


@dataclass(frozen=True)
class Failed:
    #: the error's `type`: diverged, timeout, invalid, resources or internal
    kind: str
    message: str


@dataclass(frozen=True)
class Cancelled:
    """Stopped at its owner's request."""


@dataclass(frozen=True)
class HandedBack:
    """Its worker is stopping: the job goes back to the queue."""


@dataclass(frozen=True)
class Lost:
    """The job is no longer this worker's (its lease ran out, another worker took it)."""


Outcome = Succeeded | Failed | Cancelled | HandedBack | Lost

#: the errors that end a job with a type of its own; any other ends it `internal`
_FAILURES: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str]] = [
    (Diverged, "diverged"),
    (TimedOut, "timeout"),
    ((InvalidJob, ValidationError), "invalid"),
]


def of_error(
    exc: BaseException, *, claimed: job_queue.Claimed, stop_reason: str | None, budget: int
) -> Outcome:
    """How the run of `claimed` that raised `exc` ends; `stop_reason` is why its recorder
    asked it to stop, `budget` the worker's memory (DESCENT_WORKER_MEMORY)."""
    if isinstance(exc, Interrupted):
        return _stopped(stop_reason)
    if isinstance(exc, ValidationError) and (refusal := over_budget(exc)) is not None:
        return Failed("resources", f"this worker cannot hold the job: {refusal}")
    if memory.is_out_of_memory(exc):
        gc.collect()  # what the failed job held, before the next job allocates
        log.warning("job %s ran out of memory: %s", claimed.id, exc)
        return Failed("resources", memory.out_of_memory_message(exc, claimed.spec, budget))
    for kinds, kind in _FAILURES:
        if isinstance(exc, kinds):
            return Failed(kind, str(exc))
    log.error("job %s failed", claimed.id, exc_info=exc)
    return Failed("internal", f"{type(exc).__name__}: {exc}")


def _stopped(reason: str | None) -> Outcome:
    """The end of a run its recorder stopped: a cancel, a shutdown, or a lost job."""
    if reason == "cancel":
        return Cancelled()
    if reason == "shutdown":
        return HandedBack()
    return Lost()


def end(engine: Engine, claimed: job_queue.Claimed, outcome: Outcome, *, worker_id: str) -> None:
    """Record how the job ended: finished, handed back to the queue, or (lost) nothing."""
    if isinstance(outcome, Lost):
        return  # not ours to end
    if isinstance(outcome, HandedBack):
        job_queue.release(engine, job_pk=claimed.pk, worker_id=worker_id)
        log.info("job %s handed back to the queue", claimed.id)
        return
    status, result, error = _stored(outcome)
    if job_queue.finish(
        engine,
        job_pk=claimed.pk,
        worker_id=worker_id,
        status=status,
        result=result,
        error=error,
    ):
        log.info("job %s %s", claimed.id, status.value)
    else:
        log.warning("job %s was no longer this worker's when it ended", claimed.id)


def _stored(
    outcome: Succeeded | Failed | Cancelled,
) -> tuple[JobStatus, dict[str, Any] | None, dict[str, str] | None]:
    """The job's finished status, and its `result` or `error` as the store keeps them."""
    if isinstance(outcome, Succeeded):
        return JobStatus.succeeded, outcome.result.as_dict(), None
    if isinstance(outcome, Failed):
        return JobStatus.failed, None, {"type": outcome.kind, "message": outcome.message}
    message = "cancelled at the user's request"
    return JobStatus.cancelled, None, {"type": "cancelled", "message": message}
