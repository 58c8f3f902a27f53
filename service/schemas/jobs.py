"""The public job resource, its list page, and the curve and parameter answers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel


class JobStatus(StrEnum):
    """Where a job is in its life; only `service.jobs` moves a job between these."""

    #: waiting for a worker
    queued = "queued"
    #: claimed by a worker, which holds its lease
    running = "running"
    #: trained to the last epoch
    succeeded = "succeeded"
    #: stopped by an error (see `error.type`)
    failed = "failed"
    #: stopped at a user's request
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


#: `resources`: the job needed more memory than its worker has (or its GPU holds)
ErrorType = Literal["diverged", "invalid", "timeout", "resources", "cancelled", "internal"]


class JobError(BaseModel):
    type: ErrorType
    message: str


class Progress(BaseModel):
    step: int
    total_steps: int
    epoch: int
    total_epochs: int


class Job(BaseModel):
    """A job as `GET /jobs/{id}` answers it."""

    id: str
    name: str | None
    status: JobStatus
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    result: dict[str, Any] | None
    error: JobError | None
    #: the sweep that made the job (`POST /sweeps`), or null for a job posted alone
    sweep_id: str | None = None


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: str | None


class Series(BaseModel):
    steps: list[int]
    values: list[float | None]


class Curves(BaseModel):
    job_id: str
    status: JobStatus
    series: dict[str, Series]


class Parameters(BaseModel):
    job_id: str
    step: int
    parameters: dict[str, Any]


class Trajectory(BaseModel):
    job_id: str
    steps: list[int]
    points: list[list[float | None]]
