"""Sweeps: one job per point of a grid over a base spec, made in one transaction, then read,
cancelled and deleted whole. Every change to a job's state goes through `service.jobs`.

A grid maps dotted paths into the spec (`optimizer`, `optimizer.lr`, `batch_size`) to lists of
values; its points are the cartesian product, the last path varying fastest. A point's spec is
the base as it was sent with the point's values set, whole objects before their fields (so
`optimizer` and `optimizer.lr` combine), validated as `POST /jobs` validates a spec.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import secrets
import typing
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine, delete, func, insert, select

from service import curves, jobs, specs
from service.db.engine import reading, writing
from service.db.models import JobRow, SweepRow, utcnow
from service.errors import BadRequest, InvalidSweep, NotFound
from service.schemas.jobs import JobStatus
from service.schemas.spec import FitSpec, MinimizeSpec, job_spec_adapter
from service.schemas.sweeps import (
    Counts,
    Sweep,
    SweepCreated,
    SweepJobRef,
    SweepRequest,
    SweepRun,
    SweepSummary,
)

#: largest page `GET /sweeps` answers
MAX_PAGE = 500

#: the orders `GET /sweeps/{id}` gives the runs in: the grid's, or best final loss first
Order = Literal["grid", "final_loss"]
Grid = Mapping[str, Sequence[Any]]
Overrides = dict[str, Any]

#: what a run is read with: its grid values and state, not its spec
_RUN_COLUMNS = (
    JobRow.id,
    JobRow.overrides,
    JobRow.status,
    JobRow.step,
    JobRow.total_steps,
    JobRow.epoch,
    JobRow.total_epochs,
    JobRow.result,
    JobRow.error,
)


class _Unsettable(ValueError):
    """A path that leads through something other than an object at one grid point."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path

    def error(self) -> dict[str, Any]:
        return {"type": "invalid_path", "loc": ("body", "grid", self.path), "msg": str(self)}


# --- the grid ----------------------------------------------------------------------------


def expand(
    engine: Engine, request: SweepRequest, *, owner: str | None, max_jobs: int
) -> list[jobs.SweepJob]:
    """Every point's job, in grid order, each spec checked in full.

    Raises InvalidSweep naming each unknown path, the limit, or each invalid point and field.
    """
    _check_paths(request.grid, type(request.base))
    _check_size(request.grid, max_jobs)
    filled = request.base.model_dump(mode="json")
    made: list[jobs.SweepJob] = []
    errors: list[dict[str, Any]] = []
    for overrides in points(request.grid):
        try:
            spec = _point_spec(engine, request.sent_base, filled, overrides, owner=owner)
        except _Unsettable as exc:
            errors.append(_naming(overrides, exc.error()))
            continue
        except ValidationError as exc:
            errors.extend(_located(exc, overrides))
            continue
        made.append(
            jobs.SweepJob(
                spec=spec.model_dump(mode="json"),
                total_steps=spec.total_steps,
                total_epochs=spec.epochs,
                overrides=overrides,
            )
        )
    if errors:
        raise InvalidSweep(errors)
    return made


def points(grid: Grid) -> list[Overrides]:
    """The grid's cartesian product as `{path: value}` per point; the last path varies fastest."""
    paths = list(grid)
    return [dict(zip(paths, values, strict=True)) for values in itertools.product(*grid.values())]


def _check_paths(grid: Grid, root: type[BaseModel]) -> None:
    errors = [
        {"type": "invalid_path", "loc": ("body", "grid", path), "msg": why, "input": path}
        for path in grid
        if (why := unknown_path(path, root)) is not None
    ]
    if errors:
        raise InvalidSweep(errors)


def unknown_path(path: str, root: type[BaseModel]) -> str | None:
    """Why `path` names no field of a spec of type `root`; None when it names one."""
    models = {root}
    parts = path.split(".")
    for depth, part in enumerate(parts):
        where = repr(".".join(parts[:depth])) if depth else "the job spec"
        if not models:
            return f"{path!r} leads into {where}, which is not an object with fields"
        fields = {name for model in models for name in model.model_fields}
        if part not in fields:
            return f"no field {part!r} in {where}; its fields are {', '.join(sorted(fields))}"
        models = {
            inner
            for model in models
            if part in model.model_fields
            for inner in _models(model.model_fields[part].annotation)
        }
    return None


def _models(annotation: Any) -> set[type[BaseModel]]:
    """The pydantic models a field's type holds: itself, or the members of a union."""
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return {annotation} if issubclass(annotation, BaseModel) else set()
    return {model for arg in typing.get_args(annotation) for model in _models(arg)}


def _check_size(grid: Grid, max_jobs: int) -> None:
    size = math.prod(len(values) for values in grid.values())
    if size > max_jobs:
        shape = " x ".join(str(len(values)) for values in grid.values())
        raise InvalidSweep(
            [
                {
                    "type": "too_many_points",
                    "loc": ("body", "grid"),
                    "msg": f"the grid has {size} points ({shape}); the limit is {max_jobs} jobs"
                    " a sweep (DESCENT_MAX_SWEEP_JOBS)",
                    "ctx": {"points": size, "limit": max_jobs},
                }
            ]
        )


def _point_spec(
    engine: Engine,
    sent: dict[str, Any],
    filled: dict[str, Any],
    overrides: Overrides,
    *,
    owner: str | None,
) -> FitSpec | MinimizeSpec:
    spec = apply(sent, filled, overrides)
    return specs.resolve(engine, job_spec_adapter.validate_python(spec), owner=owner)


def apply(sent: dict[str, Any], filled: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """The base as sent with a point's values set, whole objects before their fields.

    An object a path leads through that the base leaves out is the base's with its defaults
    (`filled`), so `optimizer.lr` works on a base that does not name its optimizer.
    """
    spec = copy.deepcopy(sent)
    for path in sorted(overrides, key=lambda p: p.count(".")):
        _set(spec, filled, path, overrides[path])
    return spec


def _set(spec: dict[str, Any], filled: Any, path: str, value: Any) -> None:
    here: Any = spec
    defaults = filled
    *parents, leaf = path.split(".")
    for depth, part in enumerate(parents):
        defaults = defaults.get(part) if isinstance(defaults, dict) else None
        if part not in here and isinstance(defaults, dict):
            here[part] = copy.deepcopy(defaults)
        here = here.get(part)
        if not isinstance(here, dict):
            where = ".".join(parents[: depth + 1])
            raise _Unsettable(
                path,
                f"cannot set {path!r}: {where!r} is {json.dumps(here)} here, not an object;"
                f" give {where!r} whole in the grid instead",
            )
    here[leaf] = copy.deepcopy(value)


def _located(exc: ValidationError, overrides: Overrides) -> list[dict[str, Any]]:
    """A point's validation errors, located under `grid` (then as `POST /jobs` locates them).

    An `input` that is an object or a list is left out: often the point's whole spec, which
    the answer would otherwise repeat for every invalid point.
    """
    errors = []
    for e in exc.errors(include_url=False):
        error = {**e, "loc": ("body", "grid", *e["loc"])}
        if isinstance(e["input"], dict | list):
            del error["input"]
        errors.append(_naming(overrides, error))
    return errors


def _naming(overrides: Overrides, error: dict[str, Any]) -> dict[str, Any]:
    """The error with its grid point in its message and, as `overrides`, in its context."""
    return {
        **error,
        "msg": f"grid point {json.dumps(overrides)}: {error['msg']}",
        "ctx": {**(error.get("ctx") or {}), "overrides": overrides},
    }


# --- making, reading, cancelling, deleting -----------------------------------------------


def create(
    engine: Engine, *, request: SweepRequest, owner: str | None, max_jobs: int
) -> SweepCreated:
    """Validate every point, then store the sweep and queue its jobs in one transaction."""
    runs = expand(engine, request, owner=owner, max_jobs=max_jobs)
    values = {
        "id": secrets.token_hex(8),
        "owner": owner,
        "name": request.name,
        "created_at": utcnow(),
        "base": request.sent_base,
        "grid": request.grid,
    }
    with writing(engine) as conn:
        pk = conn.execute(insert(SweepRow).values(**values).returning(SweepRow.pk)).scalar_one()
        ids = jobs.create_many(conn, sweep_pk=pk, owner=owner, runs=runs)
    return SweepCreated(
        id=values["id"],
        name=request.name,
        created_at=values["created_at"],
        jobs=[SweepJobRef(id=i, overrides=r.overrides) for i, r in zip(ids, runs, strict=True)],
    )


def _visible(sweep_id: str, owner: str | None) -> Any:
    clause = SweepRow.id == sweep_id
    return clause if owner is None else clause & (SweepRow.owner == owner)


def find(conn: Connection, *, sweep_id: str, owner: str | None) -> Any:
    """The sweep's row, or NotFound; inside the caller's transaction."""
    row = conn.execute(select(SweepRow.__table__).where(_visible(sweep_id, owner))).first()
    if row is None:
        raise NotFound(f"no sweep {sweep_id!r}")
    return row


def get(engine: Engine, *, sweep_id: str, owner: str | None, order: Order = "grid") -> Sweep:
    with reading(engine) as conn:
        return _public(conn, find(conn, sweep_id=sweep_id, owner=owner), order)


def _public(conn: Connection, row: Any, order: Order) -> Sweep:
    query = select(*_RUN_COLUMNS).where(JobRow.sweep_pk == row.pk)
    runs = [_run(r) for r in conn.execute(query.order_by(JobRow.sweep_index, JobRow.pk))]
    if order == "final_loss":
        runs.sort(key=_by_final_loss)  # stable: equal losses stay in grid order
    counts = Counts(**Counter(run.status.value for run in runs))
    return Sweep(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        base=row.base,
        grid=row.grid,
        n_jobs=len(runs),
        counts=counts,
        runs=runs,
    )


def _run(row: Any) -> SweepRun:
    return SweepRun(
        job_id=row.id,
        overrides=row.overrides or {},
        status=JobStatus(row.status),
        progress=jobs.progress_of(row),
        result=row.result,
        error=jobs.error_of(row),
    )


def _by_final_loss(run: SweepRun) -> tuple[bool, float]:
    """Finite final losses first, smallest first; then the rest (unfinished, failed, NaN)."""
    loss = (run.result or {}).get("final_loss")
    if isinstance(loss, float | int) and not isinstance(loss, bool) and math.isfinite(loss):
        return (False, float(loss))
    return (True, 0.0)


def list_page(
    engine: Engine, *, owner: str | None, limit: int, cursor: str | None
) -> tuple[list[SweepSummary], str | None]:
    """Newest first; the cursor is the position after which the next page starts."""
    query = select(SweepRow.pk, SweepRow.id, SweepRow.name, SweepRow.created_at)
    query = query.order_by(SweepRow.pk.desc()).limit(limit + 1)
    if owner is not None:
        query = query.where(SweepRow.owner == owner)
    if cursor is not None:
        if not cursor.isdigit():
            raise BadRequest(f"cursor {cursor!r} is not one this service gave out")
        query = query.where(SweepRow.pk < int(cursor))
    with reading(engine) as conn:
        rows = conn.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        counts = _counts(conn, [r.pk for r in rows])
    items = [
        SweepSummary(
            id=r.id,
            name=r.name,
            created_at=r.created_at,
            n_jobs=sum(counts.get(r.pk, {}).values()),
            counts=Counts(**counts.get(r.pk, {})),
        )
        for r in rows
    ]
    return items, (str(rows[-1].pk) if more else None)


def _counts(conn: Connection, sweep_pks: list[int]) -> dict[int | None, dict[str, int]]:
    """Each sweep's jobs by status, in one query."""
    if not sweep_pks:
        return {}
    query = (
        select(JobRow.sweep_pk, JobRow.status, func.count())
        .where(JobRow.sweep_pk.in_(sweep_pks))
        .group_by(JobRow.sweep_pk, JobRow.status)
    )
    out: dict[int | None, dict[str, int]] = {}
    for sweep_pk, status, n in conn.execute(query):
        out.setdefault(sweep_pk, {})[status] = n
    return out


def read_curves(
    engine: Engine,
    *,
    sweep_id: str,
    owner: str | None,
    name: str,
    after: int | None,
    points: int | None,
) -> tuple[Any, list[dict[str, Any]]]:
    """The sweep's row, and the series `name` of each run in grid order, thinned to `points`
    as a job's curves are; all read from one snapshot."""
    with reading(engine) as conn:
        row = find(conn, sweep_id=sweep_id, owner=owner)
        query = select(JobRow.pk, JobRow.id, JobRow.overrides, JobRow.status)
        runs = conn.execute(
            query.where(JobRow.sweep_pk == row.pk).order_by(JobRow.sweep_index, JobRow.pk)
        ).all()
        series = [
            curves.read(conn, job_pk=run.pk, names=[name], after=after).get(name, ([], []))
            for run in runs
        ]
    out = []
    for run, (steps, values) in zip(runs, series, strict=True):
        if points is not None:
            steps, values = curves.thin(steps, values, points)
        out.append(
            {
                "job_id": run.id,
                "overrides": run.overrides or {},
                "status": run.status,
                "steps": steps,
                "values": values,
            }
        )
    return row, out


def cancel(engine: Engine, *, sweep_id: str, owner: str | None) -> Sweep:
    """Cancel every job of the sweep that has not finished: a queued one at once, a running
    one by its worker, within about a second. Finished jobs are left as they are."""
    with writing(engine) as conn:
        row = find(conn, sweep_id=sweep_id, owner=owner)
        jobs.cancel_sweep_jobs(conn, sweep_pk=row.pk)
        return _public(conn, row, "grid")


def delete_sweep(engine: Engine, *, sweep_id: str, owner: str | None) -> None:
    """Remove the sweep, its jobs and all their data; a running job's worker finds it gone."""
    with writing(engine) as conn:
        row = find(conn, sweep_id=sweep_id, owner=owner)
        jobs.delete_sweep_jobs(conn, sweep_pk=row.pk)
        conn.execute(delete(SweepRow).where(SweepRow.pk == row.pk))
