"""Checking a job spec against what only the database knows: the datasets it names."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from service import datasets
from service.errors import NotFound
from service.schemas.datasets import Dataset
from service.schemas.spec import (
    DatasetData,
    DatasetFacts,
    FitSpec,
    MinimizeSpec,
    job_spec_adapter,
)


def facts(dataset: Dataset) -> DatasetFacts:
    return DatasetFacts(
        n_samples=dataset.n_samples,
        n_features=dataset.n_features,
        integer_target=dataset.integer_target,
        target_min=dataset.target_min,
        target_max=dataset.target_max,
    )


def resolve(
    engine: Engine, spec: FitSpec | MinimizeSpec, *, owner: str | None
) -> FitSpec | MinimizeSpec:
    """The spec checked in full: a `dataset` job's rules need the dataset's size and targets.

    Raises pydantic's ValidationError, as the first validation would have.
    """
    if not isinstance(spec, FitSpec) or not isinstance(spec.data, DatasetData):
        return spec
    known: dict[str, Any] = {}
    try:
        known[spec.data.id] = facts(datasets.get(engine, dataset_id=spec.data.id, owner=owner))
    except NotFound:
        pass  # the validator says so, naming the field
    return job_spec_adapter.validate_python(
        spec.model_dump(mode="json"), context={"datasets": known}
    )


def prefixed(exc: ValidationError) -> list[dict[str, Any]]:
    """The errors as FastAPI reports a body's, located under `body`."""
    return [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
