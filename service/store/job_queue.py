"""Every job-state transition, each in its own transaction. Nothing else changes a status.

Writes by a worker are fenced: they name the worker, and take effect only while that worker
still holds the job (status `running`, same `worker_id`). A worker that lost its job (the
lease expired, the job was deleted) finds its writes refused and stops.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from service.db.engine import reading, writing
from service.db.tables import (
    CheckpointRow,
    CurveChunkRow,
    CurveSeriesRow,
    JobRow,
    ParametersRow,
    SweepRow,
    TrajectoryRow,
    utcnow,
)
from service.errors import Conflict, NotFound
from service.schemas.jobs import Job, JobError, JobStatus, Progress
from service.store import chunks, paging
from service.wakeup import notify_new_job

#: seconds a job asking for a GPU waits for a GPU worker before a CPU-only worker fails it
GPU_WAIT_SECONDS = 10.0

FINISHED = tuple(status for status in JobStatus if status.finished)


@dataclass(frozen=True)
class Claimed:
    """What a worker needs of the job it claimed."""

    pk: int
    id: str
    spec: dict[str, Any]
    attempts: int
    #: the `torch.save`d state to resume from, when an earlier worker left one
    checkpoint: bytes | None = None


@dataclass(frozen=True)
class SweepJob:
    """A job a sweep queues: its spec with every default filled in, its size, and the grid
    values that made it."""

    spec: dict[str, Any]
    total_steps: int
    total_epochs: int
    overrides: dict[str, Any]


# --- reading -----------------------------------------------------------------------------


def to_public(row: Any) -> Job:
    """The API's view of a job row (read with its `sweep_id`, as `find` reads it)."""
    return Job(
        id=row.id,
        name=row.name,
        status=JobStatus(row.status),
        spec=row.spec,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        progress=progress_of(row),
        result=row.result,
        error=error_of(row),
        sweep_id=row.sweep_id,
    )


def progress_of(row: Any) -> Progress:
    return Progress(
        step=row.step, total_steps=row.total_steps, epoch=row.epoch, total_epochs=row.total_epochs
    )


def error_of(row: Any) -> JobError | None:
    return JobError(**row.error) if row.error else None


def _with_sweep_id() -> Select[Any]:
    """Job rows with the public id of the sweep that made them (`sweep_id`, else null)."""
    return select(JobRow.__table__, SweepRow.id.label("sweep_id")).outerjoin(
        SweepRow, JobRow.sweep_pk == SweepRow.pk
    )


def find(conn: Connection, *, job_id: str, owner: str | None) -> JobRow:
    """The job row, or NotFound; inside the caller's transaction."""
    row = conn.execute(_with_sweep_id().where(paging.visible(JobRow, job_id, owner))).first()
    if row is None:
        raise NotFound(f"no job {job_id!r}")
    return row  # type: ignore[return-value]


def get(engine: Engine, *, job_id: str, owner: str | None) -> Job:
    with reading(engine) as conn:
        return to_public(find(conn, job_id=job_id, owner=owner))


def list_page(
    engine: Engine,
    *,
    owner: str | None,
    status: JobStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    """Newest first; the cursor is the position after which the next page starts."""
    query = _with_sweep_id()
    if status is not None:
        query = query.where(JobRow.status == status.value)
    with reading(engine) as conn:
        rows, next_cursor = paging.read_page(
            conn, query, JobRow, owner=owner, limit=limit, cursor=cursor
        )
    return [to_public(r) for r in rows], next_cursor


def tally(engine: Engine, *, owner: str | None) -> tuple[dict[str, int], int]:
    """Jobs by status, and the steps recorded over them all; of one owner's, or everyone's."""
    counts = select(JobRow.status, func.count()).group_by(JobRow.status)
    steps = select(func.coalesce(func.sum(JobRow.step), 0))
    if owner is not None:
        counts, steps = counts.where(JobRow.owner == owner), steps.where(JobRow.owner == owner)
    with reading(engine) as conn:
        rows = conn.execute(counts).all()
        total = conn.execute(steps).scalar_one()
    return {status: count for status, count in rows}, int(total)


# --- the API's transitions ---------------------------------------------------------------


def create(
    engine: Engine,
    *,
    spec: dict[str, Any],
    owner: str | None,
    total_steps: int,
    total_epochs: int,
) -> Job:
    """A new queued job."""
    values = _queued(spec, owner=owner, total_steps=total_steps, total_epochs=total_epochs)
    with writing(engine) as conn:
        conn.execute(insert(JobRow).values(**values))
        notify_new_job(conn)
        return to_public(find(conn, job_id=values["id"], owner=owner))


def create_many(
    conn: Connection, *, sweep_pk: int, owner: str | None, runs: Sequence[SweepJob]
) -> list[str]:
    """Queue a sweep's jobs in grid order, inside the transaction that makes the sweep; their
    ids, in that order."""
    rows = [
        {
            **_queued(
                run.spec, owner=owner, total_steps=run.total_steps, total_epochs=run.total_epochs
            ),
            "sweep_pk": sweep_pk,
            "sweep_index": index,
            "overrides": run.overrides,
        }
        for index, run in enumerate(runs)
    ]
    if rows:
        conn.execute(insert(JobRow), rows)
        notify_new_job(conn)
    return [row["id"] for row in rows]


def _queued(
    spec: dict[str, Any], *, owner: str | None, total_steps: int, total_epochs: int
) -> dict[str, Any]:
    """A new queued job's row."""
    return {
        "id": secrets.token_hex(8),
        "owner": owner,
        "name": spec.get("name"),
        "status": JobStatus.queued.value,
        "spec": spec,
        "device": spec.get("device", "auto"),
        "created_at": utcnow(),
        "total_steps": total_steps,
        "total_epochs": total_epochs,
        "step": 0,
        "epoch": 0,
        "cancel_requested": False,
        "attempts": 0,
    }


def cancel(engine: Engine, *, job_id: str, owner: str | None) -> Job:
    """A queued job ends at once; a running one is flagged and its worker stops it."""
    with writing(engine) as conn:
        row = find(conn, job_id=job_id, owner=owner)
        if row.status in FINISHED:
            raise Conflict(f"job {job_id} has already finished ({row.status})")
        _cancel(conn, JobRow.pk == row.pk)
        return to_public(find(conn, job_id=job_id, owner=owner))


def cancel_sweep_jobs(conn: Connection, *, sweep_pk: int) -> None:
    """Cancel every job of a sweep that has not finished, inside the caller's transaction."""
    _cancel(conn, JobRow.sweep_pk == sweep_pk)


def _cancel(conn: Connection, which: Any) -> None:
    """The queued jobs among `which` end at once; the running ones are flagged, and their
    workers stop them."""
    conn.execute(
        update(JobRow)
        .where(which & (JobRow.status == JobStatus.queued.value))
        .values(
            status=JobStatus.cancelled.value,
            finished_at=utcnow(),
            error={"type": "cancelled", "message": "cancelled while queued"},
        )
    )
    conn.execute(
        update(JobRow)
        .where(which & (JobRow.status == JobStatus.running.value))
        .values(cancel_requested=True)
    )


def delete_job(engine: Engine, *, job_id: str, owner: str | None) -> None:
    """Remove a job and all its data. A running job's worker finds it gone and stops."""
    with writing(engine) as conn:
        row = find(conn, job_id=job_id, owner=owner)
        _delete_data(conn, [row.pk])
        conn.execute(delete(JobRow).where(JobRow.pk == row.pk))


def delete_sweep_jobs(conn: Connection, *, sweep_pk: int) -> None:
    """Remove every job of a sweep and all their data, inside the caller's transaction."""
    _delete_data(conn, select(JobRow.pk).where(JobRow.sweep_pk == sweep_pk))
    conn.execute(delete(JobRow).where(JobRow.sweep_pk == sweep_pk))


def _delete_data(conn: Connection, job_pks: Sequence[int] | Select[Any]) -> None:
    """Everything recorded for the jobs `job_pks` (a list of keys, or a query of them)."""
    series = select(CurveSeriesRow.id).where(CurveSeriesRow.job_pk.in_(job_pks))
    conn.execute(delete(CurveChunkRow).where(CurveChunkRow.series_id.in_(series)))
    conn.execute(delete(CurveSeriesRow).where(CurveSeriesRow.job_pk.in_(job_pks)))
    conn.execute(delete(ParametersRow).where(ParametersRow.job_pk.in_(job_pks)))
    conn.execute(delete(TrajectoryRow).where(TrajectoryRow.job_pk.in_(job_pks)))
    conn.execute(delete(CheckpointRow).where(CheckpointRow.job_pk.in_(job_pks)))


# --- the worker's transitions ------------------------------------------------------------


def _claimable(*, has_gpu: bool) -> Any:
    clause = JobRow.status == JobStatus.queued.value
    if not has_gpu:
        # leave GPU jobs to GPU workers for a while; after that, take them to fail them
        waited = JobRow.created_at < utcnow() - timedelta(seconds=GPU_WAIT_SECONDS)
        clause &= or_(JobRow.device.in_(("auto", "cpu")), waited)
    return clause


def any_queued(engine: Engine, *, has_gpu: bool) -> bool:
    """A cheap read an idle worker polls before it asks for the write lock."""
    with engine.connect() as conn:
        return bool(conn.execute(select(exists().where(_claimable(has_gpu=has_gpu)))).scalar())


def claim_next(
    engine: Engine, *, worker_id: str, lease_seconds: float, has_gpu: bool
) -> Claimed | None:
    """Take the oldest queued job; exactly one worker gets each job."""
    with writing(engine) as conn:
        pk = conn.execute(
            select(JobRow.pk)
            .where(_claimable(has_gpu=has_gpu))
            .order_by(JobRow.pk)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).scalar()
        if pk is None:
            return None
        _take(conn, [pk], worker_id=worker_id, lease_seconds=lease_seconds)
        row = conn.execute(
            select(JobRow.id, JobRow.spec, JobRow.attempts).where(JobRow.pk == pk)
        ).one()
        checkpoint = conn.execute(
            select(CheckpointRow.state).where(CheckpointRow.job_pk == pk)
        ).scalar()
    return Claimed(pk=pk, id=row.id, spec=row.spec, attempts=row.attempts, checkpoint=checkpoint)


def claim_siblings(
    engine: Engine,
    *,
    lead: Claimed,
    worker_id: str,
    lease_seconds: float,
    has_gpu: bool,
    accept: Callable[[dict[str, Any]], bool],
    most: int,
) -> list[Claimed]:
    """Take up to `most` more queued jobs of `lead`'s sweep whose specs `accept` takes and
    that have no checkpoint, to train together with it; none for a job outside a sweep."""
    with writing(engine) as conn:
        sweep_pk = conn.execute(select(JobRow.sweep_pk).where(JobRow.pk == lead.pk)).scalar()
        if sweep_pk is None:
            return []
        checkpointed = select(CheckpointRow.job_pk).where(CheckpointRow.job_pk == JobRow.pk)
        rows = conn.execute(
            select(JobRow.pk, JobRow.id, JobRow.spec, JobRow.attempts)
            .where(_claimable(has_gpu=has_gpu), JobRow.sweep_pk == sweep_pk)
            .where(~exists(checkpointed))
            .order_by(JobRow.pk)
            .with_for_update(skip_locked=True)
        ).all()
        taken: list[Any] = []
        for row in rows:
            if len(taken) == most:
                break
            if accept(row.spec):
                taken.append(row)
        _take(conn, [row.pk for row in taken], worker_id=worker_id, lease_seconds=lease_seconds)
    return [Claimed(pk=r.pk, id=r.id, spec=r.spec, attempts=r.attempts + 1) for r in taken]


def _take(conn: Connection, pks: list[int], *, worker_id: str, lease_seconds: float) -> None:
    """Mark queued jobs as running on `worker_id`, under a fresh lease."""
    if not pks:
        return
    now = utcnow()
    conn.execute(
        update(JobRow)
        .where(JobRow.pk.in_(pks))
        .values(
            status=JobStatus.running.value,
            worker_id=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(JobRow.started_at, now),
            attempts=JobRow.attempts + 1,
        )
    )


def _held(job_pk: int, worker_id: str) -> Any:
    return (
        (JobRow.pk == job_pk)
        & (JobRow.worker_id == worker_id)
        & (JobRow.status == JobStatus.running.value)
    )


def poll(engine: Engine, *, job_pk: int, worker_id: str) -> str:
    """`held`, `cancel` (a user asked) or `lost` (the job is no longer this worker's)."""
    with engine.connect() as conn:
        flag = conn.execute(
            select(JobRow.cancel_requested).where(_held(job_pk, worker_id))
        ).scalar()
    if flag is None:
        return "lost"
    return "cancel" if flag else "held"


def heartbeat(engine: Engine, *, job_pk: int, worker_id: str, lease_seconds: float) -> bool:
    """Renew the lease; False if the job is no longer this worker's."""
    with writing(engine) as conn:
        done = conn.execute(
            update(JobRow)
            .where(_held(job_pk, worker_id))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
    return done.rowcount == 1


# built once: a worker advances its job at every write of its points, thousands of times a
# second for a fast loop, and building the statement cost more than running it
_ADVANCE = (
    update(JobRow)
    .where(
        (JobRow.pk == bindparam("held_pk"))
        & (JobRow.worker_id == bindparam("held_by"))
        & (JobRow.status == JobStatus.running.value)
    )
    .values(step=bindparam("new_step"), epoch=bindparam("new_epoch"))
)


def advance(conn: Connection, *, job_pk: int, worker_id: str, step: int, epoch: int) -> bool:
    """Move a running job's progress, inside the transaction that records its points."""
    params = {"held_pk": job_pk, "held_by": worker_id, "new_step": step, "new_epoch": epoch}
    return conn.execute(_ADVANCE, params).rowcount == 1


def finish(
    engine: Engine,
    *,
    job_pk: int,
    worker_id: str,
    status: JobStatus,
    result: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
) -> bool:
    """End a running job as succeeded, failed or cancelled."""
    if status not in FINISHED:
        raise ValueError(f"finish() takes a finished status, not {status}")
    with writing(engine) as conn:
        done = conn.execute(
            update(JobRow)
            .where(_held(job_pk, worker_id))
            .values(
                status=status.value,
                result=result,
                error=error,
                finished_at=utcnow(),
                worker_id=None,
                lease_expires_at=None,
            )
        )
    return done.rowcount == 1


def release(engine: Engine, *, job_pk: int, worker_id: str) -> bool:
    """Hand a running job back to the queue (its worker is stopping); it resumes from its
    latest checkpoint."""
    with writing(engine) as conn:
        done = conn.execute(update(JobRow).where(_held(job_pk, worker_id)).values(**_requeued()))
        if done.rowcount == 1:
            notify_new_job(conn)
            _rewind(conn, job_pk)
    return done.rowcount == 1


def requeue_expired(engine: Engine) -> int:
    """Queue again the running jobs whose worker stopped renewing its lease."""
    expired = (JobRow.status == JobStatus.running.value) & (JobRow.lease_expires_at < utcnow())
    with writing(engine) as conn:
        rows = conn.execute(select(JobRow.pk, JobRow.cancel_requested).where(expired)).all()
        for pk, cancel_requested in rows:
            values = _requeued()
            if cancel_requested:  # its user asked to stop it: no point in running it again
                values.update(
                    status=JobStatus.cancelled.value,
                    finished_at=utcnow(),
                    error={"type": "cancelled", "message": "cancelled; its worker had died"},
                )
            conn.execute(update(JobRow).where(JobRow.pk == pk).values(**values))
            notify_new_job(conn)  # PostgreSQL sends one per transaction
            if not cancel_requested:
                _rewind(conn, pk)
    return len(rows)


def _rewind(conn: Connection, job_pk: int) -> None:
    """Back to the latest checkpoint: what was recorded after it is dropped, since the next
    worker records those steps again; with no checkpoint, back to the start."""
    saved = conn.execute(
        select(CheckpointRow.step, CheckpointRow.epoch).where(CheckpointRow.job_pk == job_pk)
    ).first()
    step, epoch = saved if saved is not None else (0, 0)
    if saved is None:
        _delete_data(conn, [job_pk])
    series = select(CurveSeriesRow.id).where(CurveSeriesRow.job_pk == job_pk)
    chunks.rewind(conn, conn.execute(series).scalars().all(), step)
    conn.execute(
        delete(TrajectoryRow).where((TrajectoryRow.job_pk == job_pk) & (TrajectoryRow.step > step))
    )
    conn.execute(update(JobRow).where(JobRow.pk == job_pk).values(step=step, epoch=epoch))


def _requeued() -> dict[str, Any]:
    return {"status": JobStatus.queued.value, "worker_id": None, "lease_expires_at": None}
