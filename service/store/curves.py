"""The curve store: points written in batches of whole steps, read back whole or thinned."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import orjson
import safetensors.numpy
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, Select, bindparam, case, func, insert, select, update

from service.db.engine import reading, writing
from service.db.tables import (
    CheckpointRow,
    CurvePointRow,
    CurveSeriesRow,
    ParametersRow,
    TrajectoryRow,
)
from service.spec import costs, job_spec_adapter
from service.spec.limits import Limits
from service.store import datasets, job_queue

#: series by name: their steps and values, ordered by step
Series = dict[str, tuple[list[int], list[float | None]]]


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
    parameters: bytes | bytearray | None = None,
) -> bool:
    """Write a chunk if the worker still holds the job; `ids` caches the job's series ids.

    The progress, the points and the parameters go in one transaction, so a reader sees all
    of a step's points or none of them.
    """
    with writing(engine) as conn:
        if not job_queue.advance(
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
        if parameters is not None:
            _save_parameters(conn, job_pk, chunk.step, parameters)
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


def _save_parameters(conn: Connection, job_pk: int, step: int, file: bytes | bytearray) -> None:
    values = {"step": step, "scalars": scalars_in(file), "file": file}
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


class SeriesEnd(NamedTuple):
    """A series of a job and the step of its last point (None while it has none)."""

    id: int
    name: str
    last_step: int | None


def _series_ends_query(named: bool) -> Select[int, str, int | None]:
    last_step = (
        select(func.max(CurvePointRow.step))
        .where(CurvePointRow.series_id == CurveSeriesRow.id)
        .scalar_subquery()
    )
    query = select(CurveSeriesRow.id, CurveSeriesRow.name, last_step).where(
        CurveSeriesRow.job_pk == bindparam("job_pk")
    )
    if named:
        query = query.where(CurveSeriesRow.name.in_(bindparam("names", expanding=True)))
    return query.order_by(CurveSeriesRow.id)


def _points_query(after: bool) -> Select[int, float | None]:
    query = select(CurvePointRow.step, CurvePointRow.value).where(
        CurvePointRow.series_id.in_(bindparam("ids", expanding=True))
    )
    if after:
        query = query.where(CurvePointRow.step > bindparam("after"))
    return query.order_by(CurvePointRow.series_id, CurvePointRow.step)


# Built once: a poll is a few index look-ups, and building and hashing a statement each time
# cost as much as running it.
_SERIES_ENDS = {named: _series_ends_query(named) for named in (False, True)}
_POINTS = {after: _points_query(after) for after in (False, True)}


def series_ends(conn: Connection, *, job_pk: int, names: Sequence[str] | None) -> list[SeriesEnd]:
    """A job's series (those named, or all), in the order they were made, with their last steps.

    Points are only ever appended to a series in step order (a job sent back to the queue
    drops the points past its checkpoint before it runs again), so a series whose last step
    is unchanged has no new points. One query of index look-ups: what a poll's `ETag` is
    made of.
    """
    params: dict[str, object] = {"job_pk": job_pk}
    if names is not None:
        params["names"] = list(names)
    rows = conn.execute(_SERIES_ENDS[names is not None], params).all()
    return [SeriesEnd._make(row) for row in rows]


def most_points(series: Sequence[SeriesEnd], *, after: int | None) -> int:
    """At most how many points `read_series` finds past `after`: steps are distinct integers,
    from 0 up."""
    first = 0 if after is None else after + 1
    return sum(max(0, s.last_step - first + 1) for s in series if s.last_step is not None)


def read(
    conn: Connection, *, job_pk: int, names: Sequence[str] | None, after: int | None
) -> Series:
    """A job's series, each ordered by step, inside the caller's (snapshot) transaction."""
    return read_series(conn, series_ends(conn, job_pk=job_pk, names=names), after=after)


def read_series(
    conn: Connection, series: Sequence[SeriesEnd], *, after: int | None
) -> dict[str, tuple[list[int], list[float | None]]]:
    """The points of `series` past step `after`, all in one query, each series by step.

    `series` must come from `series_ends` in the same (snapshot) transaction: each series'
    points end at its last step, which is where the one list of rows is cut.
    """
    out: dict[str, tuple[list[int], list[float | None]]] = {s.name: ([], []) for s in series}
    if not series:
        return out
    ordered = sorted(series)  # by id, as the rows come
    params: dict[str, object] = {"ids": [s.id for s in ordered]}
    if after is not None:
        params["after"] = after
    result = conn.execute(_POINTS[after is not None], params)
    # the driver's own rows: SQLAlchemy's Row objects for a 100,000-point curve cost more
    # than the fetch itself, and these two columns need no conversion
    rows = result.cursor.fetchall()
    result.close()
    steps = [r[0] for r in rows]
    start = 0
    for one in ordered:
        if one.last_step is None or (after is not None and one.last_step <= after):
            continue  # no points past `after`: none of the rows are this series'
        end = steps.index(one.last_step, start) + 1
        out[one.name] = (steps[start:end], [r[1] for r in rows[start:end]])
        start = end
    if start != len(rows):  # points past a series' last step: not the same snapshot
        raise RuntimeError("read_series needs series_ends from the same snapshot transaction")
    return out


def read_trajectory(conn: Connection, *, job_pk: int) -> tuple[list[int], list[str]]:
    """Steps and the stored JSON of each point, in step order."""
    rows = conn.execute(
        select(TrajectoryRow.step, TrajectoryRow.point)
        .where(TrajectoryRow.job_pk == job_pk)
        .order_by(TrajectoryRow.step)
    ).all()
    return [r[0] for r in rows], [r[1] for r in rows]


#: a safetensors file of no tensors: what a job that has saved no parameters yet is served
NO_PARAMETERS = struct.pack("<Q", 8) + b"{}      "


class SavedParameters(NamedTuple):
    """A job's latest parameters, as stored."""

    step: int
    #: the scalars its tensors hold
    scalars: int
    #: the tensors as a safetensors file; None where it was left unread (`read_parameters`)
    file: bytes | None


def job_parameters(
    engine: Engine, *, job_id: str, owner: str | None, max_scalars: int | None
) -> SavedParameters:
    """A job's latest saved parameters (step 0 and none for a job that saved none yet); past
    `max_scalars` the file is left unread (None)."""
    with reading(engine) as conn:
        row = job_queue.find(conn, job_id=job_id, owner=owner)
        saved = read_parameters(conn, job_pk=row.pk, max_scalars=max_scalars)
    return saved or SavedParameters(step=0, scalars=0, file=NO_PARAMETERS)


def job_trajectory(
    engine: Engine, *, job_id: str, owner: str | None
) -> tuple[dict[str, Any], list[int], list[str]]:
    """A job's stored spec, and the steps and points (as JSON lists) of its trajectory."""
    with reading(engine) as conn:
        row = job_queue.find(conn, job_id=job_id, owner=owner)
        steps, points = read_trajectory(conn, job_pk=row.pk)
    return row.spec, steps, points


@dataclass(frozen=True)
class Snapshot:
    """A job's row and the ends of its series, read in one snapshot that `read` continues."""

    job: Any
    ends: list[SeriesEnd]
    conn: Connection

    def read(self, *, after: int | None) -> Series:
        return read_series(self.conn, self.ends, after=after)


@contextmanager
def snapshot(
    engine: Engine, *, job_id: str, owner: str | None, names: Sequence[str] | None
) -> Iterator[Snapshot]:
    """A look at a job's curves that can read them after deciding whether to (a poll)."""
    with reading(engine) as conn:
        row = job_queue.find(conn, job_id=job_id, owner=owner)
        yield Snapshot(row, series_ends(conn, job_pk=row.pk, names=names), conn)


def job_points_after(
    engine: Engine, *, job_id: str, owner: str | None, after: int
) -> tuple[Any, Series]:
    """The job and its points after `after`, from one snapshot: the points match the status."""
    with reading(engine) as conn:
        row = job_queue.find(conn, job_id=job_id, owner=owner)
        # a job's `step` is its last recorded step, written with the points; below it, no
        # point is new and the per-series reads can be skipped
        if row.step <= after and row.status not in job_queue.FINISHED:
            return row, {}
        return row, read(conn, job_pk=row.pk, names=None, after=after)


def why_no_trajectory(
    engine: Engine, raw_spec: dict[str, Any], *, owner: str | None, limits: Limits
) -> str | None:
    """Why a stored job keeps no trajectory, or None where it keeps one."""
    try:
        spec = datasets.resolve_for(
            engine, job_spec_adapter.validate_python(raw_spec), owner=owner, limits=limits
        )
    except ValidationError:
        return None  # its dataset is gone, or the limits moved: nothing to say of its size
    return costs.why_no_trajectory(spec, limits.max_values)


class JobDrawing(NamedTuple):
    """What a picture of a job draws: its row, its series and a minimize job's path."""

    job: Any
    series: Series
    path: list[str]


def job_drawing(engine: Engine, *, job_id: str, owner: str | None) -> JobDrawing:
    with reading(engine) as conn:
        row = job_queue.find(conn, job_id=job_id, owner=owner)
        series = read(conn, job_pk=row.pk, names=None, after=None)
        minimize = row.spec.get("task") == "minimize"
        _, path = read_trajectory(conn, job_pk=row.pk) if minimize else ([], [])
    return JobDrawing(row, series, path)


def read_parameters(
    conn: Connection, *, job_pk: int, max_scalars: int | None = None
) -> SavedParameters | None:
    """The job's latest parameters; their file only if it holds at most `max_scalars` scalars,
    so a model too large to serve as JSON is never read to be refused."""
    file: Any = ParametersRow.file
    if max_scalars is not None:
        file = case((ParametersRow.scalars <= max_scalars, ParametersRow.file))
    row = conn.execute(
        select(ParametersRow.step, ParametersRow.scalars, file).where(
            ParametersRow.job_pk == job_pk
        )
    ).first()
    return SavedParameters(row[0], row[1], row[2]) if row is not None else None


def safetensors_header(file: bytes | bytearray) -> dict[str, Any]:
    """A safetensors file's tensors, `{name: {"dtype", "shape", "data_offsets"}}`, in the order
    the file lists them (the worker writes a model's in `state_dict` order)."""
    (length,) = struct.unpack_from("<Q", file)
    header: dict[str, Any] = orjson.loads(bytes(file[8 : 8 + length]))
    header.pop("__metadata__", None)
    return header


def scalars_in(file: bytes | bytearray) -> int:
    return sum(math.prod(tensor["shape"]) for tensor in safetensors_header(file).values())


def parameters_json(file: bytes) -> bytes:
    """The tensors of a safetensors file as the JSON object `{name: nested lists}`; values
    that are not finite as null."""
    arrays = safetensors.numpy.load(file)
    return orjson.dumps(
        {name: _as_json_array(arrays[name]) for name in safetensors_header(file)},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _as_json_array(array: np.ndarray) -> np.ndarray | float | int | bool:
    # float32 widened, so each value is written as the exact float64 it is (as `tolist()` does),
    # not as the shortest float32 text; twice as fast as `tolist()` all the same
    if array.dtype.kind == "f":
        array = array.astype(np.float64)
    return array if array.ndim else array.item()  # orjson writes no 0-d arrays


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
