"""Sweeps: one job per point of a grid over a base spec (`service.spec.sweep` makes them),
stored in one transaction, then read, cancelled and deleted whole. Every change to a job's
state goes through `job_queue`.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sqlalchemy import Connection, Engine, delete, func, insert, select

from service.db.engine import reading, writing
from service.db.tables import JobRow, SweepRow, utcnow
from service.errors import NotFound
from service.schemas.jobs import JobStatus
from service.schemas.sweeps import (
    Counts,
    Sweep,
    SweepCreated,
    SweepJobRef,
    SweepRun,
    SweepSummary,
)
from service.spec import DatasetFacts
from service.spec import sweep as sweep_spec
from service.spec.limits import Limits
from service.spec.sweep import SweepRequest
from service.store import curves, datasets, job_queue, paging

#: the settings' default limits, for callers that give none (tests, scripts)
DEFAULT_LIMITS = Limits()


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


def create(
    engine: Engine,
    *,
    request: SweepRequest,
    owner: str | None,
    max_jobs: int,
    limits: Limits = DEFAULT_LIMITS,
) -> SweepCreated:
    """Resolve every point, then store the sweep and queue its jobs in one transaction."""
    runs = [_queued(point) for point in _expand(engine, request, owner, max_jobs, limits)]
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
        ids = job_queue.create_many(conn, sweep_pk=pk, owner=owner, runs=runs)
    return SweepCreated(
        id=values["id"],
        name=request.name,
        created_at=values["created_at"],
        jobs=[SweepJobRef(id=i, overrides=r.overrides) for i, r in zip(ids, runs, strict=True)],
    )


def _expand(
    engine: Engine, request: SweepRequest, owner: str | None, max_jobs: int, limits: Limits
) -> list[sweep_spec.Point]:
    def facts(dataset_id: str | None) -> dict[str, DatasetFacts]:
        return datasets.known_facts(engine, dataset_id=dataset_id, owner=owner)

    return sweep_spec.expand(request, limits=limits, max_jobs=max_jobs, datasets=facts)


def _queued(point: sweep_spec.Point) -> job_queue.SweepJob:
    return job_queue.SweepJob(
        spec=point.spec.model_dump(mode="json"),
        total_steps=point.spec.total_steps,
        total_epochs=point.spec.epochs,
        overrides=point.overrides,
    )


def find(conn: Connection, *, sweep_id: str, owner: str | None) -> Any:
    """The sweep's row, or NotFound; inside the caller's transaction."""
    row = conn.execute(
        select(SweepRow.__table__).where(paging.visible(SweepRow, sweep_id, owner))
    ).first()
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
        progress=job_queue.progress_of(row),
        result=row.result,
        error=job_queue.error_of(row),
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
    with reading(engine) as conn:
        rows, next_cursor = paging.read_page(
            conn, query, SweepRow, owner=owner, limit=limit, cursor=cursor
        )
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
    return items, next_cursor


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
    window: curves.Window,
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
            curves.read_series(
                conn, curves.series_ends(conn, job_pk=run.pk, names=[name]), window
            ).get(name, ([], []))
            for run in runs
        ]
    out = []
    for run, (steps, values) in zip(runs, series, strict=True):
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
        job_queue.cancel_sweep_jobs(conn, sweep_pk=row.pk)
        return _public(conn, row, "grid")


def delete_sweep(engine: Engine, *, sweep_id: str, owner: str | None) -> None:
    """Remove the sweep, its jobs and all their data; a running job's worker finds it gone."""
    with writing(engine) as conn:
        row = find(conn, sweep_id=sweep_id, owner=owner)
        job_queue.delete_sweep_jobs(conn, sweep_pk=row.pk)
        conn.execute(delete(SweepRow).where(SweepRow.pk == row.pk))
