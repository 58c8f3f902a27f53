"""The curve store: points written in batches of whole steps, read back whole or thinned."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import orjson
import safetensors.numpy
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, Select, bindparam, case, insert, select, update

from service.db.engine import reading, writing
from service.db.tables import (
    CheckpointRow,
    CurveChunkRow,
    CurveSeriesRow,
    ParametersRow,
    TrajectoryRow,
)
from service.spec import costs, job_spec_adapter
from service.spec.limits import Limits
from service.store import chunks, datasets, job_queue, summaries
from service.store.thinning import thin as thin  # the reference thinning, in memory
from service.store.thinning import thin_all as thin_all

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
    tails: dict[str, SeriesTail],
    parameters: bytes | bytearray | None = None,
) -> bool:
    """Write a chunk if the worker still holds the job; `tails` is the writer's own state of
    the job's series, updated only once the transaction has committed.

    The progress, the points and the parameters go in one transaction, so a reader sees all
    of a step's points or none of them.
    """
    written: dict[str, SeriesTail] = {}
    with writing(engine) as conn:
        if not job_queue.advance(
            conn, job_pk=job_pk, worker_id=worker_id, step=chunk.step, epoch=chunk.epoch
        ):
            return False
        for name, (steps, values) in chunk.series.items():
            if len(steps) == 0:
                continue
            known = tails.get(name)
            series_id = known.series_id if known else _series_id(conn, job_pk, name)
            step_array, value_array = summaries.as_arrays(steps, values)
            open_chunk = chunks.append(
                conn, series_id, known.open if known else None, step_array, value_array
            )
            written[name] = SeriesTail(series_id, open_chunk)
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
    tails.update(written)
    return True


class SeriesTail(NamedTuple):
    """What a writer keeps of a series between its writes."""

    series_id: int
    open: chunks.OpenChunk


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
        select(CurveChunkRow.last_step)
        .where((CurveChunkRow.series_id == CurveSeriesRow.id) & (CurveChunkRow.level == 0))
        .order_by(CurveChunkRow.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = select(CurveSeriesRow.id, CurveSeriesRow.name, last_step).where(
        CurveSeriesRow.job_pk == bindparam("job_pk")
    )
    if named:
        query = query.where(CurveSeriesRow.name.in_(bindparam("names", expanding=True)))
    return query.order_by(CurveSeriesRow.id)


# Built once: a poll is a few index look-ups, and building and hashing a statement each time
# cost as much as running it.
_SERIES_ENDS = {named: _series_ends_query(named) for named in (False, True)}


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


@dataclass(frozen=True)
class Window:
    """Which of a series' points a read wants: steps past `after` and in [start, end], thinned
    to `points` (None: no bound, no thinning)."""

    after: int | None = None
    start: int | None = None
    end: int | None = None
    points: int | None = None

    @property
    def first(self) -> int | None:
        past_after = None if self.after is None else self.after + 1
        bounds = [b for b in (self.start, past_after) if b is not None]
        return max(bounds) if bounds else None


def most_points(series: Sequence[SeriesEnd], window: Window) -> int:
    """At most how many points `read_series` returns: steps are distinct integers, from 0 up,
    and a thinned read keeps at most `points` of each series."""
    first = window.first or 0
    total = 0
    for one in series:
        if one.last_step is None:
            continue
        last = one.last_step if window.end is None else min(window.end, one.last_step)
        count = max(0, last - first + 1)
        total += count if window.points is None else min(count, window.points)
    return total


def read(
    conn: Connection,
    *,
    job_pk: int,
    names: Sequence[str] | None,
    after: int | None = None,
    start: int | None = None,
    end: int | None = None,
    points: int | None = None,
) -> Series:
    """A job's series, each ordered by step, inside the caller's (snapshot) transaction."""
    window = Window(after=after, start=start, end=end, points=points)
    return read_series(conn, series_ends(conn, job_pk=job_pk, names=names), window)


def read_series(conn: Connection, series: Sequence[SeriesEnd], window: Window) -> Series:
    """The points of `series` in `window`, each series by step, as lists (None where a value
    was not finite)."""
    return {
        name: (steps.tolist(), _values_list(values))
        for name, (steps, values) in read_arrays(conn, series, window).items()
    }


#: series by name: their steps (int64) and values (float64, NaN where not finite)
SeriesArrays = dict[str, tuple[np.ndarray, np.ndarray]]


def read_arrays(conn: Connection, series: Sequence[SeriesEnd], window: Window) -> SeriesArrays:
    """`read_series` as arrays: what an answer's JSON is written from with no list between
    (orjson writes NaN as null).

    `series` should come from `series_ends` in the same (snapshot) transaction: a series read
    past the last step that was seen would hold points the answer's tag does not cover, so
    each read stops there.
    """
    none = (np.empty(0, np.int64), np.empty(0, np.float64))
    out: SeriesArrays = {one.name: none for one in series}
    # a series whose last step is before the window holds none of it (and `after + 1` may be
    # past what the database's integers hold)
    stored = [one for one in series if _at_most(one, window) > 0]
    # series that hold few points in the window (at most their steps): read in one query and
    # thinned in memory; the others through their summaries
    most = None if window.points is None else window.points * chunks.WHOLE_FACTOR
    few = [one for one in stored if most is None or _at_most(one, window) <= most]
    if few:
        ends = [one.last_step or 0 for one in few]
        last = max(ends) if window.end is None else min(window.end, max(ends))
        found = chunks.read_many(conn, [one.id for one in few], first=window.first, last=last)
        for one in few:
            steps, values = found[one.id]
            keep = steps <= (one.last_step or 0)
            out[one.name] = chunks.thinned_in_memory(steps[keep], values[keep], window.points)
    for one in stored:
        if one not in few:
            end = one.last_step if window.end is None else min(window.end, one.last_step or 0)
            out[one.name] = chunks.read(
                conn, one.id, first=window.first, last=end, points=window.points
            )
    return out


def _at_most(one: SeriesEnd, window: Window) -> int:
    """At most how many points a series holds in a window: steps are distinct, from 0."""
    if one.last_step is None:
        return 0
    last = one.last_step
    if window.end is not None:
        last = min(window.end, last)
    return max(0, last - (window.first or 0) + 1)


def _values_list(values: np.ndarray) -> list[float | None]:
    """Values as JSON takes them: None where not finite."""
    listed: list[float | None] = values.tolist()
    if np.isnan(values).any():
        listed = [None if v != v else v for v in listed]  # NaN is the one value unequal to itself
    return listed


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

    def read(self, window: Window) -> SeriesArrays:
        return read_arrays(self.conn, self.ends, window)


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


def job_drawing(
    engine: Engine, *, job_id: str, owner: str | None, points: int | None
) -> JobDrawing:
    with reading(engine) as conn:
        row = job_queue.find(conn, job_id=job_id, owner=owner)
        series = read(conn, job_pk=row.pk, names=None, points=points)
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
