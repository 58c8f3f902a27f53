"""A sweep's request (a base spec and a grid over it) and the answers about it."""

from __future__ import annotations

import copy
import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

from service.schemas.jobs import JobError, JobStatus, Progress
from service.schemas.spec import INT64_MAX, INT64_MIN, TEXT_PATTERN, JobSpec

#: a grid's key: field names joined by dots, from the spec's top level (`optimizer.lr`)
PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


def _storable(values: list[Any]) -> list[Any]:
    """Values the database's JSON holds as they were sent: finite numbers, integers of 64
    bits, UTF-8 text. (A value the spec takes is all of these; a shadowed one need not be.)"""
    stack: list[Any] = [values]
    while stack:  # a loop, not recursion: the nesting is as deep as the body's
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError("values must be finite numbers, not NaN or infinity")
        elif isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{value} is past the 64-bit integers a value may be")
        elif isinstance(value, str) and not _utf8(value):
            raise ValueError("text must not hold lone surrogates")
    return values


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


GridPath = Annotated[str, StringConstraints(pattern=PATH_PATTERN, max_length=200)]
GridValues = Annotated[list[Any], Field(min_length=1), AfterValidator(_storable)]

_EXAMPLE: dict[str, Any] = {
    "name": "x^2 from 10: four optimizers",
    "base": {
        "task": "minimize",
        "objective": {"type": "quadratic"},
        "x0": [10.0],
        "optimizer": {"type": "sgd", "lr": 0.1},
        "steps": 20,
    },
    "grid": {
        "optimizer": [
            {"type": "sgd", "lr": 0.1},
            {"type": "momentum", "lr": 0.1, "beta": 0.9},
            {"type": "rmsprop", "lr": 0.1, "alpha": 0.9},
            {"type": "adam", "lr": 0.1},
        ],
        "seed": [0, 1],
    },
}


class SweepRequest(BaseModel):
    """`POST /sweeps`: one job per point of the grid's cartesian product.

    Each grid key is a dotted path into the spec: a whole object (`optimizer`) or a field of
    one (`optimizer.lr`). A point's spec is the base as sent with the point's values set,
    whole objects before their fields, then validated as `POST /jobs` validates a spec.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN)
    base: JobSpec
    #: `{dotted path: [values]}`; the last path varies fastest. `{}` makes one job, the base
    grid: dict[GridPath, GridValues]
    _sent_base: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_base_as_sent(
        cls, data: Any, handler: ModelWrapValidatorHandler[SweepRequest]
    ) -> SweepRequest:
        # the points are made from the base as sent, not with its defaults filled in: a loss
        # resolved for the base's data need not fit a point's other data
        request = handler(data)
        sent = data.get("base") if isinstance(data, dict) else None
        if not isinstance(sent, dict):
            sent = request.base.model_dump(mode="json", exclude_unset=True)
        try:
            _storable([sent])
        except ValueError as exc:
            raise ValueError(f"base: {exc}") from None
        request._sent_base = copy.deepcopy(sent)
        return request

    @property
    def sent_base(self) -> dict[str, Any]:
        """The base spec as the request gave it."""
        return self._sent_base


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
