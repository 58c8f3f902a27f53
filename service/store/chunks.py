"""A series stored as chunks of packed points under a pyramid of summaries (the `curve_chunks`
table), and the reads it makes cheap.

Level 0 holds the points, CHUNK_POINTS to a row (small enough that a row sits in one database
page, so reading the few points a read needs costs one page each); the last chunk of a series
is the open one, rewritten as points arrive. When a chunk closes (the next one starts), every
summary it completes is written: the level-1 row over FANOUT chunks (their summaries packed in
it), the level-2 row over FANOUT level-1 rows, and so on. A read of a window thinned to N
points covers the window with the coarsest summaries there are and opens only those a
stretch's edge cuts, down to the few chunks whose points it needs: O(N) rows whatever the
curve's length (M4, Jugel et al. 2014; OM3's min-max trees, 2023).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ARRAY, Connection, Integer, bindparam, delete, func, select
from sqlalchemy.orm import aliased

from service.db.tables import CurveChunkRow
from service.store import summaries, thinning
from service.store.summaries import PACKED

#: points in a chunk: 512 bytes of values, seven rows to a 4 KiB page
CHUNK_POINTS = 64
#: chunks (or summaries) under one summary of the next level
FANOUT = 16
#: levels of summaries: FANOUT**6 chunks hold 10^9 points, past any job's steps
LEVELS = 6
#: a window of at most this many times the points asked for is read whole and thinned in
#: memory. Through the summaries, each of the points/2 stretch edges costs a row of parts
#: (FANOUT summaries) and a chunk (CHUNK_POINTS points): about 40 values per point asked for,
#: against the window's own points read whole. Measured at 1,000 points: 20,000 steps 4.1 ms
#: through the summaries, 1.6 ms whole; 100,000 both 6.0 ms; 200,000 7.1 ms against 14 ms.
WHOLE_FACTOR = 100

_T = CurveChunkRow
_SCALARS: list[Any] = [getattr(_T, name) for name in summaries.FIELDS]


@dataclass(frozen=True)
class OpenChunk:
    """The last chunk of a series as its writer holds it: never changed, only replaced."""

    seq: int
    steps: np.ndarray
    values: np.ndarray
    #: per level k, the closed level-k summaries (packed) whose level-(k+1) summary is not
    #: written yet: FANOUT of them make it
    pending: tuple[np.ndarray, ...]


def _opening(seq: int, pending: tuple[np.ndarray, ...]) -> OpenChunk:
    return OpenChunk(seq, np.empty(0, np.int64), np.empty(0, np.float64), pending)


# --- writing ----------------------------------------------------------------------------

_ROW_COLUMNS = [*summaries.FIELDS, "steps", "parts", "values"]
_LAST_SEQ = (
    select(_T.seq)
    .where((_T.series_id == bindparam("series_id")) & (_T.level == 0))
    .order_by(_T.seq.desc())
    .limit(1)
)
_CHILDREN = (
    select(_T.seq, *_SCALARS)
    .where(
        (_T.series_id == bindparam("series_id"))
        & (_T.level == bindparam("level"))
        & _T.seq.between(bindparam("lo"), bindparam("hi"))
    )
    .order_by(_T.seq)
)


def append(
    conn: Connection, series_id: int, tail: OpenChunk | None, steps: np.ndarray, values: np.ndarray
) -> OpenChunk:
    """Add points (past the series' last step) inside the caller's transaction; the new tail.

    The open chunk and the new points are cut into chunks, summarised in one pass and written
    in one statement; a full last chunk stays open until a point after it arrives. A writer
    that holds no tail (a new one, or a job's next attempt) starts a new chunk after the last
    one stored.
    """
    if tail is None:
        tail = _resume(conn, series_id)
    all_steps = np.concatenate([tail.steps, steps])
    all_values = np.concatenate([tail.values, values])
    starts = np.arange(0, len(all_steps), CHUNK_POINTS)
    if len(starts) == 0:
        return tail
    summary = summaries.reduce_points(all_steps, all_values, starts)
    _upsert_chunks(conn, series_id, tail.seq, summary, all_steps, all_values)
    pending = _roll_up(conn, series_id, tail.pending, 0, summary[:-1], first_seq=tail.seq)
    at = int(starts[-1])
    return OpenChunk(tail.seq + len(starts) - 1, all_steps[at:], all_values[at:], pending)


def _upsert_chunks(
    conn: Connection,
    series_id: int,
    first_seq: int,
    summary: np.ndarray,
    steps: np.ndarray,
    values: np.ndarray,
) -> None:
    """The chunks of these points (CHUNK_POINTS each, from `first_seq`), new or grown, in one
    statement. Rows as plain tuples to the driver's executemany: SQLAlchemy's work per row of
    parameters cost more than the database's."""
    contiguous = summary["last_step"] - summary["first_step"] + 1 == summary["points"]
    value_bytes = values.astype("<f8").tobytes()
    step_array = steps.astype("<i8")
    rows = []
    for k, (columns, whole) in enumerate(zip(_columns(summary), contiguous.tolist(), strict=True)):
        at = slice(k * CHUNK_POINTS * 8, (k + 1) * CHUNK_POINTS * 8)
        packed_steps = (
            None if whole else step_array[k * CHUNK_POINTS : (k + 1) * CHUNK_POINTS].tobytes()
        )
        rows.append((series_id, 0, first_seq + k, *columns, packed_steps, None, value_bytes[at]))
    _upsert(conn, rows)


_NAMES = ["series_id", "level", "seq", *_ROW_COLUMNS]


def _upsert_sql(dialect: str) -> str:
    """SQLite: one row of placeholders, for executemany. PostgreSQL: one array a column,
    unnested into rows: one statement for the whole batch (psycopg's executemany spends
    tens of microseconds a row)."""
    quoted = [f'"{name}"' for name in _NAMES]
    if dialect == "sqlite":
        rows = f"VALUES ({', '.join(['?'] * len(_NAMES))})"
    else:
        types = [_SQL_TYPES[getattr(_T, name).type.python_type] for name in _NAMES]
        rows = f"SELECT * FROM unnest({', '.join(f'%b::{t}[]' for t in types)})"
    updates = ", ".join(f"{q} = excluded.{q}" for q in quoted[3:])
    return (
        f"INSERT INTO {_T.__tablename__} ({', '.join(quoted)}) {rows} "
        f"ON CONFLICT (series_id, level, seq) DO UPDATE SET {updates}"
    )


_SQL_TYPES = {int: "integer", float: "double precision", bytes: "bytea"}
_UPSERT_SQL = {dialect: _upsert_sql(dialect) for dialect in ("sqlite", "postgresql")}


def _upsert(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Rows in `_NAMES` order, new or replacing those with the same key."""
    sql = _UPSERT_SQL[conn.dialect.name]
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(sql, tuple(list(column) for column in zip(*rows, strict=True)))
    else:
        conn.exec_driver_sql(sql, rows if len(rows) > 1 else rows[0])


def _columns(packed: np.ndarray) -> list[tuple[Any, ...]]:
    """Summaries' columns in FIELDS order: NULL for the extremes of a stretch with no finite
    value."""
    columns = [packed[name].tolist() for name in summaries.FIELDS]
    for name in ("min", "max"):
        value, step = (
            summaries.FIELDS.index(f"{name}_value"),
            summaries.FIELDS.index(f"{name}_step"),
        )
        for k, found in enumerate(columns[step]):
            if found < 0:
                columns[value][k] = columns[step][k] = None
    return list(zip(*columns, strict=True))


def _resume(conn: Connection, series_id: int) -> OpenChunk:
    """A new writer's tail: a new chunk after the last one stored, which closes; what it and
    the summaries above it complete is written (again, after a rewind: replaced)."""
    last = conn.execute(_LAST_SEQ, {"series_id": series_id}).scalar()
    if last is None:
        return _opening(0, tuple(np.empty(0, PACKED) for _ in range(LEVELS)))
    pending = []
    for level in range(LEVELS):
        here = last // FANOUT**level  # the level-`level` summary over the last chunk
        siblings = (here // FANOUT) * FANOUT
        params = {"series_id": series_id, "level": level, "lo": siblings, "hi": here - 1}
        pending.append(_packed_rows(conn.execute(_CHILDREN, params).all()))
    params = {"series_id": series_id, "level": 0, "lo": last, "hi": last}
    closing = _packed_rows(conn.execute(_CHILDREN, params).all())
    rolled = _roll_up(conn, series_id, tuple(pending), 0, closing, first_seq=last)
    return _opening(last + 1, rolled)


def _roll_up(
    conn: Connection,
    series_id: int,
    pending: tuple[np.ndarray, ...],
    level: int,
    closed: np.ndarray,
    *,
    first_seq: int,
) -> tuple[np.ndarray, ...]:
    """`pending` once the level-`level` summaries `closed` (seqs from `first_seq`) are added:
    every FANOUT of them complete a summary above, written and added there in turn. (A
    rewound job's next attempt may close again what its last one had closed: the upsert
    replaces it.)"""
    if len(closed) == 0 or level >= LEVELS:
        return pending
    waiting = np.concatenate([pending[level], closed])
    first_waiting = first_seq - len(pending[level])  # the seq of waiting[0]: a multiple of FANOUT
    whole = len(waiting) // FANOUT
    above = np.empty(0, dtype=PACKED)
    if whole:
        above = _write_summaries(
            conn, series_id, level + 1, first_waiting // FANOUT, waiting[: whole * FANOUT]
        )
    rest = (*pending[:level], waiting[whole * FANOUT :], *pending[level + 1 :])
    return _roll_up(conn, series_id, rest, level + 1, above, first_seq=first_waiting // FANOUT)


def _write_summaries(
    conn: Connection, series_id: int, level: int, first_seq: int, parts: np.ndarray
) -> np.ndarray:
    """Write the level-`level` summaries of `parts` (FANOUT each, from seq `first_seq`)."""
    above = summaries.reduce(
        summaries.as_units(parts, level - 1, 0), np.arange(0, len(parts), FANOUT)
    )
    packed = parts.tobytes()
    size = FANOUT * PACKED.itemsize
    rows = [
        (series_id, level, first_seq + k, *columns, None, packed[k * size : (k + 1) * size], None)
        for k, columns in enumerate(_columns(above))
    ]
    _upsert(conn, rows)
    return above


def _packed_rows(rows: Sequence[Sequence[Any]]) -> np.ndarray:
    """Rows of `(seq, *scalars)` as packed summaries (NULL extremes as NaN and -1)."""
    table = np.array([row[1:] for row in rows], dtype=np.float64)
    table = table.reshape(-1, len(summaries.FIELDS))
    packed = np.zeros(len(table), dtype=PACKED)
    for index, name in enumerate(summaries.FIELDS):
        column = table[:, index]
        if PACKED[name].kind == "i":
            column = np.where(np.isnan(column), -1, column)
        packed[name] = column
    return packed


def rewind(conn: Connection, series_ids: Sequence[int], step: int) -> None:
    """Drop every point past `step`, and every summary that held one."""
    ids = list(series_ids)
    if not ids:
        return
    mine = _T.series_id.in_(ids)
    conn.execute(delete(_T).where(mine & (_T.level > 0) & (_T.last_step > step)))
    conn.execute(delete(_T).where(mine & (_T.level == 0) & (_T.first_step > step)))
    cut = conn.execute(
        select(_T.series_id, _T.seq, _T.first_step, _T.points, _T.steps, _T.values).where(
            mine & (_T.level == 0) & (_T.last_step > step)
        )
    ).all()
    for series_id, seq, first, points, packed_steps, packed_values in cut:
        steps, values = summaries.unpack_values(first, points, packed_steps, packed_values)
        keep = steps <= step
        summary = summaries.reduce_points(steps[keep], values[keep], np.array([0]))
        _upsert_chunks(conn, series_id, seq, summary, steps[keep], values[keep])


# --- reading ----------------------------------------------------------------------------

_CHUNK_AT = (
    select(_T.seq)
    .where(
        (_T.series_id == bindparam("series_id"))
        & (_T.level == 0)
        & (_T.first_step <= bindparam("step"))
    )
    .order_by(_T.first_step.desc())
    .limit(1)
)
_FIRST_SEQ = (
    select(_T.seq)
    .where((_T.series_id == bindparam("series_id")) & (_T.level == 0))
    .order_by(_T.seq)
    .limit(1)
)
_POINTS = (
    select(_T.seq, _T.first_step, _T.points, _T.steps, _T.values)
    .where(
        (_T.series_id == bindparam("series_id"))
        & (_T.level == 0)
        & _T.seq.between(bindparam("lo"), bindparam("hi"))
    )
    .order_by(_T.seq)
)


def _seq_in(dialect: str) -> Any:
    """`seq` among the list `:seqs`, as one statement whatever the list's length: a list
    expanded into placeholders is rendered again at every read, which cost more than the
    query. PostgreSQL takes an array; SQLite a JSON array, read by its json_each."""
    if dialect == "postgresql":
        return _T.seq == func.any(bindparam("seqs", type_=ARRAY(Integer)))
    listed = select(func.json_each(bindparam("seqs")).table_valued("value").c.value)
    return _T.seq.in_(listed.scalar_subquery())


def _of_seqs(dialect: str, *columns: Any) -> Any:
    return (
        select(_T.seq, *columns)
        .where(
            (_T.series_id == bindparam("series_id"))
            & (_T.level == bindparam("level"))
            & _seq_in(dialect)
        )
        .order_by(_T.seq)
    )


#: by dialect: chunks' points, and summaries' parts, of a list of seqs
_POINTS_OF = {
    dialect: _of_seqs(dialect, _T.first_step, _T.points, _T.steps, _T.values)
    for dialect in ("sqlite", "postgresql")
}
_PARTS_OF = {dialect: _of_seqs(dialect, _T.parts) for dialect in ("sqlite", "postgresql")}


def _seqs(conn: Connection, seqs: np.ndarray) -> object:
    listed = [int(seq) for seq in seqs.tolist()]
    return listed if conn.dialect.name == "postgresql" else json.dumps(listed)


def _seq_at(step_name: str) -> Any:
    """The seq of the chunk that holds `:step_name` (the last to start at or before it) in the
    series of the outer query's row."""
    inner = aliased(CurveChunkRow)
    return (
        select(inner.seq)
        .where(
            (inner.series_id == _T.series_id)
            & (inner.level == 0)
            & (inner.first_step <= bindparam(step_name))
        )
        .order_by(inner.first_step.desc())
        .limit(1)
        .scalar_subquery()
    )


def _points_of_many(after_first: bool, before_last: bool) -> Any:
    query = select(_T.series_id, _T.first_step, _T.points, _T.steps, _T.values).where(
        _T.series_id.in_(bindparam("ids", expanding=True)) & (_T.level == 0)
    )
    if after_first:  # from the chunk that holds `first` (or the first chunk)
        query = query.where(_T.seq >= func.coalesce(_seq_at("first"), 0))
    if before_last:
        query = query.where(_T.first_step <= bindparam("last"))
    return query.order_by(_T.series_id, _T.seq)


# Built once: a poll is a few index look-ups, and building a statement costs as much
_POINTS_OF_MANY = {(a, b): _points_of_many(a, b) for a in (False, True) for b in (False, True)}


def read_many(
    conn: Connection, series_ids: Sequence[int], *, first: int | None, last: int | None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every point with steps in [first, last] of several series, in one query: a poll's
    read of the few points past its `after`, or whole curves."""
    params: dict[str, object] = {"ids": list(series_ids)}
    if first is not None:
        params["first"] = first
    if last is not None:
        params["last"] = last
    rows = _fetch(conn, _POINTS_OF_MANY[(first is not None, last is not None)], params)
    by_series: dict[int, list[Sequence[Any]]] = {sid: [] for sid in series_ids}
    for row in rows:
        by_series[row[0]].append(row)
    return {sid: _window(_joined(found), first, last) for sid, found in by_series.items()}


def _fetch(conn: Connection, statement: Any, params: dict[str, Any]) -> list[Any]:
    result = conn.execute(statement, params)
    rows = list(result.cursor.fetchall())  # the driver's own: SQLAlchemy's Row objects cost more
    result.close()
    return rows


def _joined(rows: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The points of rows `(_, first_step, points, steps, values)`, in order."""
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    values = np.frombuffer(b"".join(row[4] for row in rows), dtype="<f8")
    if all(row[3] is None for row in rows):  # contiguous chunks: steps from their first
        firsts = np.array([row[1] for row in rows], dtype=np.int64)
        counts = np.array([row[2] for row in rows], dtype=np.int64)
        starts = np.cumsum(counts) - counts
        steps = np.repeat(firsts - starts, counts) + np.arange(len(values))
    else:
        parts = [summaries.unpack_values(r[1], r[2], r[3], r[4])[0] for r in rows]
        steps = np.concatenate(parts)
    return steps, values


def _window(
    arrays: tuple[np.ndarray, np.ndarray], first: int | None, last: int | None
) -> tuple[np.ndarray, np.ndarray]:
    steps, values = arrays
    lo = 0 if first is None else int(np.searchsorted(steps, first, side="left"))
    hi = len(steps) if last is None else int(np.searchsorted(steps, last, side="right"))
    return steps[lo:hi], values[lo:hi]


def read(
    conn: Connection, series_id: int, *, first: int | None, last: int | None, points: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The series' points with steps in [first, last] (None: unbounded), thinned to `points`
    as `thinning.thin` would thin them, inside the caller's (snapshot) transaction."""
    found = _chunk_range(conn, series_id, first, last)
    if found is None:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    lo, hi = found
    if points is None or hi - lo < 2:
        return thinned_in_memory(*_points(conn, series_id, lo, hi, first, last), points)
    # the window's end chunks are read as points, so its first and last points are at hand
    # and every summary between is whole
    head = summaries.of_points(*_points(conn, series_id, lo, lo, first, last))
    tail = summaries.of_points(*_points(conn, series_id, hi, hi, first, last))
    units = _joined_units([head, *_cover(conn, series_id, lo + 1, hi - 1), tail])
    units["start"] = np.cumsum(units["points"]) - units["points"]
    total = int(units["points"].sum())
    if total <= points * WHOLE_FACTOR or len(head) == 0 or len(tail) == 0:  # (or an end in a gap)
        return thinned_in_memory(*_points(conn, series_id, lo, hi, first, last), points)
    bounds = summaries.stretch_bounds(total, points)
    # what no stretch's edge cuts is settled; what one cuts is opened, level by level
    settled = []
    while True:
        cut = summaries.straddling(units, bounds)
        settled.append(np.delete(units, cut))
        if len(cut) == 0:
            break
        units = _open(conn, series_id, units[cut], bounds)
    every = np.concatenate(settled)
    kept = summaries.kept(every[np.argsort(every["start"], kind="stable")], bounds, points)
    order = sorted(kept)
    return np.array(order, dtype=np.int64), np.array([kept[s] for s in order], dtype=np.float64)


def _chunk_range(
    conn: Connection, series_id: int, first: int | None, last: int | None
) -> tuple[int, int] | None:
    """The chunks that may hold steps in [first, last] (None: unbounded), or None if none."""
    if last is None:
        hi = conn.execute(_LAST_SEQ, {"series_id": series_id}).scalar()
    else:
        hi = conn.execute(_CHUNK_AT, {"series_id": series_id, "step": last}).scalar()
    if hi is None:
        return None
    lo = None
    if first is not None:
        lo = conn.execute(_CHUNK_AT, {"series_id": series_id, "step": first}).scalar()
    if lo is None:
        lo = conn.execute(_FIRST_SEQ, {"series_id": series_id}).scalar_one()
    return lo, hi


def _points(
    conn: Connection, series_id: int, lo: int, hi: int, first: int | None, last: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The points of chunks lo..hi with steps in [first, last]."""
    rows = _fetch(conn, _POINTS, {"series_id": series_id, "lo": lo, "hi": hi})
    return _window(_joined(rows), first, last)


def thinned_in_memory(
    steps: np.ndarray, values: np.ndarray, points: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if points is None or len(steps) <= points:
        return steps, values
    keep = thinning.kept_indices(values, points)
    return steps[keep], values[keep]


def _cover(conn: Connection, series_id: int, lo: int, hi: int) -> list[np.ndarray]:
    """Chunks lo..hi as the coarsest summaries there are, in order."""
    level = 0
    while level < LEVELS and FANOUT ** (level + 1) <= hi - lo + 1:
        level += 1
    return _cover_at(conn, series_id, level, lo, hi)


def _cover_at(conn: Connection, series_id: int, level: int, lo: int, hi: int) -> list[np.ndarray]:
    if lo > hi:
        return []
    size = FANOUT**level
    first, last = -(-lo // size), (hi + 1) // size - 1  # the summaries wholly inside
    if first > last:
        return _cover_at(conn, series_id, level - 1, lo, hi)
    params = {"series_id": series_id, "level": level, "lo": first, "hi": last}
    found = _packed_rows(_fetch(conn, _CHILDREN, params))
    # summaries are written in order, so those there are a prefix of first..last
    covered_to = (first + len(found)) * size - 1
    return [
        *_cover_at(conn, series_id, level - 1, lo, first * size - 1),
        summaries.as_units(found, level, first),
        *_cover_at(conn, series_id, level - 1, covered_to + 1, hi),
    ]


def _open(conn: Connection, series_id: int, cut: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """What the summaries `cut` summarise, one query per level: the summaries below them, or a
    chunk's points merged into the runs between stretch edges (which no edge cuts again)."""
    opened = []
    for level in np.unique(cut["level"]).tolist():
        mine = cut[cut["level"] == level]
        if level == 0:
            opened.append(_points_opened(conn, series_id, mine, bounds))
        else:
            opened.append(_parts_opened(conn, series_id, level, mine))
    return _joined_units(opened)


def _joined_units(pieces: list[np.ndarray]) -> np.ndarray:
    # as raw records: numpy matches the fields of every piece of a structured array again
    raw = np.dtype((np.void, summaries.UNIT.itemsize))
    return np.concatenate([piece.view(raw) for piece in pieces]).view(summaries.UNIT)


def _parts_opened(conn: Connection, series_id: int, level: int, parents: np.ndarray) -> np.ndarray:
    """Summaries at `level` as the FANOUT summaries below each."""
    params = {"series_id": series_id, "level": level, "seqs": _seqs(conn, parents["seq"])}
    rows = _fetch(conn, _PARTS_OF[conn.dialect.name], params)  # in seq order, as `parents`
    packed = np.frombuffer(b"".join(row[1] for row in rows), dtype=PACKED)
    children = summaries.as_units(packed, level - 1, 0)
    children["seq"] = (parents["seq"][:, None] * FANOUT + np.arange(FANOUT)).ravel()
    within = children["points"].reshape(-1, FANOUT)
    offsets = np.cumsum(within, axis=1) - within
    children["start"] = (parents["start"][:, None] + offsets).ravel()
    return children


def _points_opened(
    conn: Connection, series_id: int, cut: np.ndarray, bounds: np.ndarray
) -> np.ndarray:
    """Chunks as the runs of their points between stretch edges, each run one summary."""
    params = {"series_id": series_id, "level": 0, "seqs": _seqs(conn, cut["seq"])}
    rows = _fetch(conn, _POINTS_OF[conn.dialect.name], params)
    steps, values = _joined(rows)
    counts = cut["points"]
    chunk_starts = np.cumsum(counts) - counts
    # each point's place in the read: increasing, chunk after chunk
    index = np.repeat(cut["start"] - chunk_starts, counts) + np.arange(len(steps))
    at_bound = np.searchsorted(index, bounds).clip(max=len(index) - 1)
    cut_there = at_bound[index[at_bound] == bounds]
    runs = np.union1d(chunk_starts, cut_there)
    merged = summaries.as_units(summaries.reduce_points(steps, values, runs), 0, -1)
    merged["level"] = summaries.POINT  # runs are never opened: no edge cuts them
    merged["start"] = index[runs]
    return merged
