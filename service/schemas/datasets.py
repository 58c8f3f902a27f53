"""The public dataset resource and its list page."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class Dataset(BaseModel):
    """An uploaded dataset as `GET /datasets/{id}` answers it; its numbers are not served."""

    id: str
    name: str | None
    n_samples: int
    n_features: int
    #: every column's name, in the file's order, the target's included
    columns: list[str]
    target: str
    created_at: datetime
    #: whether every target value is an integer, so the data can serve as class labels
    integer_target: bool
    #: the smallest and largest target value
    target_min: float
    target_max: float


class DatasetPage(BaseModel):
    items: list[Dataset]
    next_cursor: str | None
