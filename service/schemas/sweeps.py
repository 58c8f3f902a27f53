"""A sweep's request (a base spec and a grid over it) and the answers about it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
)

from service.schemas.jobs import JobError, JobStatus, Progress


class SweepJobRef(BaseModel):
    """A job a sweep made, and the grid values that made its spec."""

    id: str
    overrides: dict[str, Any]


class SweepCreated(BaseModel):
    """`POST /sweeps`' answer: the jobs in grid order."""

    id: str
    name: str | None
    created_at: datetime
    jobs: list[SweepJobRef]


class Counts(BaseModel):
    """A sweep's jobs by status."""

    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class SweepSummary(BaseModel):
    """A sweep as `GET /sweeps` lists it."""

    id: str
    name: str | None
    created_at: datetime
    n_jobs: int
    counts: Counts


class SweepPage(BaseModel):
    items: list[SweepSummary]
    next_cursor: str | None


class SweepRun(BaseModel):
    """One job of a sweep: its grid values, where it is and how it ended."""

    job_id: str
    overrides: dict[str, Any]
    status: JobStatus
    progress: Progress
    result: dict[str, Any] | None
    error: JobError | None


class Sweep(BaseModel):
    """A sweep as `GET /sweeps/{id}` answers it."""

    id: str
    name: str | None
    created_at: datetime
    #: the base spec as it was sent (each job's spec has every default filled in)
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    n_jobs: int
    counts: Counts
    runs: list[SweepRun]


class SweepCurve(BaseModel):
    """One run's series: null where a value was not finite."""

    job_id: str
    overrides: dict[str, Any]
    status: JobStatus
    steps: list[int]
    values: list[float | None]


class SweepCurves(BaseModel):
    """`GET /sweeps/{id}/curves`: one series of every run, in grid order."""

    sweep_id: str
    name: str
    runs: list[SweepCurve]
