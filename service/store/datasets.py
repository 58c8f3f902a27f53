"""Uploaded datasets: storing the numbers an upload was parsed into (`service.api.uploads`),
reading and removing them, and what a job's spec needs to know of them."""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, delete, insert, select

from service.db.engine import reading, writing
from service.db.tables import DatasetRow, utcnow
from service.errors import NotFound, quoted
from service.schemas.datasets import Dataset
from service.spec import DatasetFacts
from service.spec import limits as spec_limits
from service.spec import resolve as resolving
from service.store import paging

#: longest column name, in characters (the target's name is stored in a column this wide)
MAX_NAME = 200

# every column but the stored numbers, which only `load` reads
_PUBLIC = [c for c in DatasetRow.__table__.c if c.name != "data"]


@dataclass(frozen=True)
class Parsed:
    """A CSV's numbers: `x` (float64, rows x features) and `y` (float64, rows)."""

    columns: list[str]
    target: str
    x: np.ndarray
    y: np.ndarray
    integer_target: bool


def name_from(filename: str | None) -> str | None:
    """A dataset's default name: the uploaded file's, cut to fit and without NUL characters."""
    return (filename or "").replace("\x00", "")[:MAX_NAME] or None


def to_public(row: Any) -> Dataset:
    """The API's view of a dataset row."""
    return Dataset.model_validate(row, from_attributes=True)


def find(conn: Connection, *, dataset_id: str, owner: str | None) -> Any:
    """The dataset's row without its numbers, or NotFound; inside the caller's transaction."""
    row = conn.execute(
        select(*_PUBLIC).where(paging.visible(DatasetRow, dataset_id, owner))
    ).first()
    if row is None:
        raise NotFound(f"no dataset {quoted(dataset_id)}")
    return row


def create(engine: Engine, *, parsed: Parsed, name: str | None, owner: str | None) -> Dataset:
    """Store a parsed upload."""
    values = {
        "id": secrets.token_hex(8),
        "owner": owner,
        "name": name,
        "created_at": utcnow(),
        "n_samples": parsed.x.shape[0],
        "n_features": parsed.x.shape[1],
        "columns": parsed.columns,
        "target": parsed.target,
        "integer_target": parsed.integer_target,
        "target_min": float(parsed.y.min()),
        "target_max": float(parsed.y.max()),
        "data": _pack(parsed.x, parsed.y),
    }
    with writing(engine) as conn:
        conn.execute(insert(DatasetRow).values(**values))
        return to_public(find(conn, dataset_id=values["id"], owner=owner))


def get(engine: Engine, *, dataset_id: str, owner: str | None) -> Dataset:
    with reading(engine) as conn:
        return to_public(find(conn, dataset_id=dataset_id, owner=owner))


def list_page(
    engine: Engine, *, owner: str | None, limit: int, cursor: str | None
) -> tuple[list[Dataset], str | None]:
    """Newest first; the cursor is the position after which the next page starts."""
    with reading(engine) as conn:
        rows, next_cursor = paging.read_page(
            conn, select(*_PUBLIC), DatasetRow, owner=owner, limit=limit, cursor=cursor
        )
    return [to_public(r) for r in rows], next_cursor


def delete_dataset(engine: Engine, *, dataset_id: str, owner: str | None) -> None:
    """Remove a dataset; jobs already trained on it keep their results."""
    with writing(engine) as conn:
        row = find(conn, dataset_id=dataset_id, owner=owner)
        conn.execute(delete(DatasetRow).where(DatasetRow.pk == row.pk))


def facts_of(dataset: Dataset) -> DatasetFacts:
    """What the spec needs to know of a dataset to check a job that trains on it."""
    return DatasetFacts(**{fact.name: getattr(dataset, fact.name) for fact in fields(DatasetFacts)})


def known_facts(
    engine: Engine, *, dataset_id: str | None, owner: str | None
) -> dict[str, DatasetFacts]:
    """The facts of the dataset a spec names, by id; empty where it names none or one the owner
    cannot see (then `resolve` says so, naming the field)."""
    if dataset_id is None:
        return {}
    try:
        return {dataset_id: facts_of(get(engine, dataset_id=dataset_id, owner=owner))}
    except NotFound:
        return {}


def resolve_for(
    engine: Engine, spec: resolving.Spec, *, owner: str | None, limits: spec_limits.Limits
) -> resolving.Spec:
    """`spec.resolve.resolve` with the facts of the dataset the spec names, as `owner` sees it."""
    named = known_facts(engine, dataset_id=resolving.dataset_of(spec), owner=owner)
    return resolving.resolve(spec, limits=limits, datasets=named)


def load(
    engine: Engine, *, dataset_id: str, owner: str | None
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The dataset and its `x` and `y` (float64); owner None reads anyone's, as workers do."""
    with reading(engine) as conn:
        row = find(conn, dataset_id=dataset_id, owner=owner)
        data = conn.execute(select(DatasetRow.data).where(DatasetRow.pk == row.pk)).scalar_one()
    x, y = _unpack(data)
    return to_public(row), x, y


def _pack(x: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=x, y=y)
    return buffer.getvalue()


def _unpack(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return arrays["x"], arrays["y"]
