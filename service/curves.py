"""The curve store: points written in batches of whole steps, read back whole or thinned."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import orjson
from sqlalchemy import Connection, Engine, insert, select, update

from service import jobs
from service.db.engine import writing
from service.db.models import (
    CheckpointRow,
    CurvePointRow,
    CurveSeriesRow,
    ParametersRow,
    TrajectoryRow,
)


class ChunkLike(Protocol):
    """Whole steps of a job's curves (the worker's `Chunk`)."""

    step: int
    epoch: int
    series: dict[str, tuple[list[int], list[float | None]]]
    trajectory: list[tuple[int, list[float]]]
    checkpoint: bytes | None


def record(
    engine: Engine,
    *,
    job_pk: int,
    worker_id: str,
    chunk: ChunkLike,
    ids: dict[str, int],
    parameters_json: str | None = None,
) -> bool:
    """Write a chunk if the worker still holds the job; `ids` caches the job's series ids.

    The progress, the points and the parameters go in one transaction, so a reader sees all
    of a step's points or none of them.
    """
    with writing(engine) as conn:
        if not jobs.advance(
            conn, job_pk=job_pk, worker_id=worker_id, step=chunk.step, epoch=chunk.epoch
        ):
            return False
        rows: list[dict[str, object]] = []
        for name, (steps, values) in chunk.series.items():
            sid = ids.get(name) or _series_id(conn, job_pk, name)
            ids[name] = sid
            rows.extend(
                {"series_id": sid, "step": s, "value": v}
                for s, v in zip(steps, values, strict=True)
            )
        if rows:
            conn.execute(insert(CurvePointRow), rows)
        if chunk.trajectory:
            conn.execute(
                insert(TrajectoryRow),
                [
                    {"job_pk": job_pk, "step": s, "point": orjson.dumps(p).decode()}
                    for s, p in chunk.trajectory
                ],
            )
        if parameters_json is not None:
            _save_parameters(conn, job_pk, chunk.step, parameters_json)
        if chunk.checkpoint is not None:
            _save_checkpoint(conn, job_pk, chunk.step, chunk.epoch, chunk.checkpoint)
    return True


def _series_id(conn: Connection, job_pk: int, name: str) -> int:
    found = conn.execute(
        select(CurveSeriesRow.id).where(
            (CurveSeriesRow.job_pk == job_pk) & (CurveSeriesRow.name == name)
        )
    ).scalar()
    if found is not None:
        return found
    return conn.execute(
        insert(CurveSeriesRow).values(job_pk=job_pk, name=name).returning(CurveSeriesRow.id)
    ).scalar_one()


def _save_parameters(conn: Connection, job_pk: int, step: int, parameters_json: str) -> None:
    values = {"step": step, "parameters": parameters_json}
    updated = conn.execute(
        update(ParametersRow).where(ParametersRow.job_pk == job_pk).values(**values)
    )
    if updated.rowcount == 0:
        conn.execute(insert(ParametersRow).values(job_pk=job_pk, **values))


def _save_checkpoint(conn: Connection, job_pk: int, step: int, epoch: int, state: bytes) -> None:
    values = {"step": step, "epoch": epoch, "state": state}
    updated = conn.execute(
        update(CheckpointRow).where(CheckpointRow.job_pk == job_pk).values(**values)
    )
    if updated.rowcount == 0:
        conn.execute(insert(CheckpointRow).values(job_pk=job_pk, **values))


def read(
    conn: Connection, *, job_pk: int, names: Sequence[str] | None, after: int | None
) -> dict[str, tuple[list[int], list[float | None]]]:
    """A job's series, each ordered by step, inside the caller's (snapshot) transaction."""
    query = select(CurveSeriesRow.id, CurveSeriesRow.name).where(CurveSeriesRow.job_pk == job_pk)
    if names is not None:
        query = query.where(CurveSeriesRow.name.in_(names))
    out: dict[str, tuple[list[int], list[float | None]]] = {}
    for sid, name in conn.execute(query.order_by(CurveSeriesRow.id)).all():
        points = select(CurvePointRow.step, CurvePointRow.value).where(
            CurvePointRow.series_id == sid
        )
        if after is not None:
            points = points.where(CurvePointRow.step > after)
        result = conn.execute(points.order_by(CurvePointRow.step))
        # the driver's own rows: SQLAlchemy's Row objects for a 100,000-point curve cost more
        # than the fetch itself, and these two columns need no conversion
        rows = result.cursor.fetchall()
        result.close()
        out[name] = ([r[0] for r in rows], [r[1] for r in rows])
    return out


def read_trajectory(conn: Connection, *, job_pk: int) -> tuple[list[int], list[str]]:
    """Steps and the stored JSON of each point, in step order."""
    rows = conn.execute(
        select(TrajectoryRow.step, TrajectoryRow.point)
        .where(TrajectoryRow.job_pk == job_pk)
        .order_by(TrajectoryRow.step)
    ).all()
    return [r[0] for r in rows], [r[1] for r in rows]


def read_parameters(conn: Connection, *, job_pk: int) -> tuple[int, str] | None:
    row = conn.execute(
        select(ParametersRow.step, ParametersRow.parameters).where(ParametersRow.job_pk == job_pk)
    ).first()
    return (row[0], row[1]) if row is not None else None


def thin(
    steps: Sequence[int], values: Sequence[float | None], points: int
) -> tuple[list[int], list[float | None]]:
    """At most `points` points: the first, the last, and each stretch's minimum and maximum.

    The interior is cut into (points - 2) // 2 stretches of near-equal length; keeping both
    extremes of every stretch means a spike survives any amount of thinning.
    """
    n = len(steps)
    if n <= points:
        return list(steps), list(values)
    if points < 2:
        raise ValueError("thinning keeps at least the first and the last point")
    arr = np.array(values, dtype=float)  # None becomes NaN
    keep = {0, n - 1}
    stretches = (points - 2) // 2
    if points == 3:  # room for one interior point: the most extreme one
        interior = arr[1:-1]
        if not np.all(np.isnan(interior)):
            keep.add(1 + int(np.nanargmax(np.abs(interior - np.nanmean(interior)))))
    elif stretches > 0:
        bounds = np.linspace(1, n - 1, stretches + 1).astype(int)
        keep.update(_stretch_extremes(arr, bounds).tolist())
    order = sorted(keep)
    return [steps[i] for i in order], [values[i] for i in order]


def _stretch_extremes(arr: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The first index of each stretch's minimum and maximum, NaN aside; a stretch that is all
    NaN gives its first index. Stretch k is arr[bounds[k]:bounds[k + 1]].

    What np.nanargmin and np.nanargmax would give stretch by stretch, in a few passes over the
    whole array instead of two calls per stretch (a 100,000-point curve has 499 stretches).
    """
    lo, hi = bounds[:-1], bounds[1:]
    lo, hi = lo[hi > lo], hi[hi > lo]  # no empty stretches; the rest still tile [lo[0], hi[-1])
    part, starts = arr[lo[0] : hi[-1]], lo - lo[0]
    which = np.repeat(np.arange(len(lo)), hi - lo)  # each element's stretch
    nan = np.isnan(part)
    index = np.arange(len(part))
    found = []
    for fill, reduce in ((np.inf, np.minimum), (-np.inf, np.maximum)):
        filled = np.where(nan, fill, part)
        extreme = reduce.reduceat(filled, starts)
        hits = ~nan & (filled == extreme[which])
        found.append(np.minimum.reduceat(np.where(hits, index, len(part)), starts))
    all_nan = np.add.reduceat(~nan, starts) == 0
    return lo[0] + np.concatenate([np.where(all_nan, starts, f) for f in found])


def thin_all(
    series: Mapping[str, tuple[list[int], list[float | None]]], points: int | None
) -> dict[str, tuple[list[int], list[float | None]]]:
    if points is None:
        return dict(series)
    return {name: thin(s, v, points) for name, (s, v) in series.items()}
