"""A spec checked in full: against the dataset it names, then against the deployment's limits.

The one `resolve()` the API (at POST) and the worker (before training) both call. The facts
of the datasets come in with the call, so this module never reads the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from service.spec.data import DatasetData, DatasetFacts
from service.spec.job import FitSpec, MinimizeSpec, job_spec_adapter
from service.spec.limits import Limits, check

Spec = FitSpec | MinimizeSpec


def dataset_of(spec: Spec) -> str | None:
    """The id of the uploaded dataset a spec trains on, if it names one."""
    if isinstance(spec, FitSpec) and isinstance(spec.data, DatasetData):
        return spec.data.id
    return None


def resolve(
    spec: Spec, *, limits: Limits, datasets: Mapping[str, DatasetFacts] | None = None
) -> Spec:
    """The spec checked in full: a `dataset` job's rules need the dataset's size and targets
    (`datasets`: the facts of those known, by id), and every job the deployment's limits.

    Raises pydantic's ValidationError, located as the first validation's errors are.
    """
    if dataset_of(spec) is not None:
        context: dict[str, Any] = {"datasets": dict(datasets or {})}
        spec = job_spec_adapter.validate_python(spec.model_dump(mode="json"), context=context)
    check(spec, limits)
    return spec


def prefixed(exc: ValidationError) -> list[dict[str, Any]]:
    """The errors as FastAPI reports a body's, under `body` (the API's handler then moves each
    rule between fields to the field it names)."""
    return [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
