"""A series stored as chunks of packed points under a pyramid of summaries (the `curve_chunks`
table), and the reads it makes cheap.

Level 0 holds the points, CHUNK_POINTS to a row; the last chunk of a series is the open one,
rewritten as points arrive. When a chunk closes (the next one starts), every summary it
completes is written: the level-1 summary of FANOUT chunks, the level-2 summary of FANOUT
level-1 summaries, and so on. A read of a window thinned to N points covers the window with
the coarsest summaries there are, opens only those a stretch's edge cuts, and so touches
O(N) rows whatever the curve's length (M4, Jugel et al. 2014; OM3's min-max trees, 2023).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import aliased

from service.db.tables import CurveChunkRow
from service.store import summaries, thinning
from service.store.summaries import Summary, Units

#: points in a chunk: ~8 KiB of values, so a chunk's row overhead is a few bits a point
CHUNK_POINTS = 1024
#: chunks (or summaries) under one summary of the next level
FANOUT = 16
#: levels of summaries: FANOUT**5 chunks hold 10^9 points, past any job's steps
LEVELS = 5

_T = CurveChunkRow
_SUMMARY_COLUMNS = [getattr(_T, name) for name in ("seq", *summaries.FIELDS)]


@dataclass(frozen=True)
class OpenChunk:
    """The last chunk of a series as its writer holds it: never changed, only replaced."""

    seq: int
    steps: np.ndarray
    values: np.ndarray
    stored: bool


# --- writing ----------------------------------------------------------------------------


def append(
    conn: Connection, series_id: int, tail: OpenChunk | None, steps: np.ndarray, values: np.ndarray
) -> OpenChunk:
    """Add points (past the series' last step) inside the caller's transaction; the new tail.

    A writer that holds no tail (a new one, or a job's next attempt) starts a new chunk after
    the last one stored, and closes that one.
    """
    if tail is None:
        tail = _start(conn, series_id)
    at = 0
    while at < len(steps):
        room = CHUNK_POINTS - len(tail.steps)
        if room == 0:
            _write(conn, series_id, tail)
            tail = _next(conn, series_id, tail.seq)
            continue
        part = slice(at, at + room)
        tail = OpenChunk(
            tail.seq,
            np.concatenate([tail.steps, steps[part]]),
            np.concatenate([tail.values, values[part]]),
            tail.stored,
        )
        at += room
    _write(conn, series_id, tail)
    return OpenChunk(tail.seq, tail.steps, tail.values, stored=True)


def _start(conn: Connection, series_id: int) -> OpenChunk:
    last = conn.execute(
        select(_T.seq)
        .where((_T.series_id == series_id) & (_T.level == 0))
        .order_by(_T.seq.desc())
        .limit(1)
    ).scalar()
    if last is None:
        return OpenChunk(0, np.empty(0, np.int64), np.empty(0, np.float64), stored=False)
    return _next(conn, series_id, last)


def _next(conn: Connection, series_id: int, closed: int) -> OpenChunk:
    """The chunk after `closed`, once the summaries `closed` completes are written."""
    seq, level = closed, 0
    while seq % FANOUT == FANOUT - 1 and level < LEVELS:
        seq, level = seq // FANOUT, level + 1
        _summarize(conn, series_id, level, seq)
    return OpenChunk(closed + 1, np.empty(0, np.int64), np.empty(0, np.float64), stored=False)


def _summarize(conn: Connection, series_id: int, level: int, seq: int) -> None:
    """Write the level-`level` summary `seq` from its FANOUT children (all closed)."""
    rows = conn.execute(
        select(*_SUMMARY_COLUMNS)
        .where(
            (_T.series_id == series_id)
            & (_T.level == level - 1)
            & _T.seq.between(seq * FANOUT, seq * FANOUT + FANOUT - 1)
        )
        .order_by(_T.seq)
    ).all()
    merged = summaries.merge([Summary(*row[1:]) for row in rows])
    key = (_T.series_id == series_id) & (_T.level == level) & (_T.seq == seq)
    conn.execute(delete(_T).where(key))  # a rewound job's next attempt closes it again
    conn.execute(insert(_T).values(series_id=series_id, level=level, seq=seq, **merged.as_row()))


def _write(conn: Connection, series_id: int, chunk: OpenChunk) -> None:
    packed_steps, packed_values = summaries.pack(chunk.steps, chunk.values)
    row = summaries.summarize(chunk.steps, chunk.values).as_row()
    row |= {"steps": packed_steps, "values": packed_values}
    if chunk.stored:
        key = (_T.series_id == series_id) & (_T.level == 0) & (_T.seq == chunk.seq)
        conn.execute(update(_T).where(key).values(**row))
    else:
        conn.execute(insert(_T).values(series_id=series_id, level=0, seq=chunk.seq, **row))


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
        steps, values = summaries.unpack(first, points, packed_steps, packed_values)
        keep = steps <= step
        _write(conn, series_id, OpenChunk(seq, steps[keep], values[keep], stored=True))


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
_FIRST_CHUNK, _LAST_CHUNK = (
    select(_T.seq)
    .where((_T.series_id == bindparam("series_id")) & (_T.level == 0))
    .order_by(order)
    .limit(1)
    for order in (_T.seq, _T.seq.desc())
)
_RAW = (
    select(_T.first_step, _T.points, _T.steps, _T.values)
    .where(
        (_T.series_id == bindparam("series_id"))
        & (_T.level == 0)
        & _T.seq.between(bindparam("lo"), bindparam("hi"))
    )
    .order_by(_T.seq)
)
_RAW_SOME = (
    select(_T.seq, _T.first_step, _T.points, _T.steps, _T.values)
    .where(
        (_T.series_id == bindparam("series_id"))
        & (_T.level == 0)
        & _T.seq.in_(bindparam("seqs", expanding=True))
    )
    .order_by(_T.seq)
)
_SUMMARIES = (
    select(*_SUMMARY_COLUMNS)
    .where(
        (_T.series_id == bindparam("series_id"))
        & (_T.level == bindparam("level"))
        & _T.seq.between(bindparam("lo"), bindparam("hi"))
    )
    .order_by(_T.seq)
)
_SUMMARIES_SOME = (
    select(*_SUMMARY_COLUMNS)
    .where(
        (_T.series_id == bindparam("series_id"))
        & (_T.level == bindparam("level"))
        & _T.seq.in_(bindparam("seqs", expanding=True))
    )
    .order_by(_T.seq)
)


def _seq_at(step_name: str) -> Any:
    """The seq of the series' chunk that holds `:step_name` (the last to start at or before
    it), for the series of the outer query's row."""
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


def _points_of_many(bounded: tuple[bool, bool]) -> Any:
    query = select(_T.series_id, _T.first_step, _T.points, _T.steps, _T.values).where(
        _T.series_id.in_(bindparam("ids", expanding=True)) & (_T.level == 0)
    )
    after_first, before_last = bounded
    if after_first:  # from the chunk that holds `first` (or the first chunk)
        query = query.where(_T.seq >= func.coalesce(_seq_at("first"), 0))
    if before_last:
        query = query.where(_T.first_step <= bindparam("last"))
    return query.order_by(_T.series_id, _T.seq)


# Built once: a poll is a few index look-ups, and building a statement costs as much
_POINTS_OF_MANY = {(a, b): _points_of_many((a, b)) for a in (False, True) for b in (False, True)}


def read_many(
    conn: Connection, series_ids: Sequence[int], *, first: int | None, last: int | None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every point with steps in [first, last] of several series, in one query: a poll's
    read of the few points past its `after`, or of whole curves."""
    params: dict[str, object] = {"ids": list(series_ids)}
    if first is not None:
        params["first"] = first
    if last is not None:
        params["last"] = last
    result = conn.execute(_POINTS_OF_MANY[(first is not None, last is not None)], params)
    rows = result.cursor.fetchall()  # the driver's own rows: Row objects cost more
    result.close()
    by_series: dict[int, list[Sequence[Any]]] = {sid: [] for sid in series_ids}
    for row in rows:
        by_series[row[0]].append(row[1:])
    return {sid: _window(_joined(found), first, last) for sid, found in by_series.items()}


def _chunk_range(
    conn: Connection, series_id: int, first: int | None, last: int | None
) -> tuple[int, int] | None:
    """The chunks that may hold steps in [first, last] (None: unbounded), or None if none."""
    if last is None:
        hi = conn.execute(_LAST_CHUNK, {"series_id": series_id}).scalar()
    else:
        hi = conn.execute(_CHUNK_AT, {"series_id": series_id, "step": last}).scalar()
    if hi is None:
        return None
    lo = None
    if first is not None:
        lo = conn.execute(_CHUNK_AT, {"series_id": series_id, "step": first}).scalar()
    if lo is None:
        lo = conn.execute(_FIRST_CHUNK, {"series_id": series_id}).scalar_one()
    return lo, hi


def _raw(
    conn: Connection, series_id: int, lo: int, hi: int, first: int | None, last: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The points of chunks lo..hi with steps in [first, last]."""
    rows = conn.execute(_RAW, {"series_id": series_id, "lo": lo, "hi": hi}).all()
    return _window(_joined(rows), first, last)


def _joined(rows: Sequence[Sequence[object]]) -> tuple[np.ndarray, np.ndarray]:
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    parts = [summaries.unpack(*row) for row in rows]  # type: ignore[arg-type]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


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
    as `curves.thin` would thin them, inside the caller's (snapshot) transaction."""
    found = _chunk_range(conn, series_id, first, last)
    if found is None:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    lo, hi = found
    if points is None or hi - lo < 2:
        steps, values = _raw(conn, series_id, lo, hi, first, last)
        return _thinned_in_memory(steps, values, points)
    # the window's ends are read as points, so its first and last points are at hand and the
    # summaries between are whole
    head = Units.of_points(*_raw(conn, series_id, lo, lo, first, last))
    tail = Units.of_points(*_raw(conn, series_id, hi, hi, first, last))
    units = Units.join([head, *_cover(conn, series_id, lo + 1, hi - 1), tail])
    total = int(units.columns["points"].sum())
    if total <= points or len(head) == 0 or len(tail) == 0:  # (a window's end in a gap)
        steps, values = _raw(conn, series_id, lo, hi, first, last)
        return _thinned_in_memory(steps, values, points)
    bounds = summaries.stretch_bounds(total, points)
    while len(cut := summaries.straddling(units, bounds)):
        units = _open(conn, series_id, units, cut)
    kept = summaries.kept(units, bounds, points)
    order = sorted(kept)
    return np.array(order, dtype=np.int64), np.array(
        [np.nan if kept[s] is None else kept[s] for s in order], dtype=np.float64
    )


def _thinned_in_memory(
    steps: np.ndarray, values: np.ndarray, points: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if points is None or len(steps) <= points:
        return steps, values
    keep = thinning.kept_indices(values, points)
    return steps[keep], values[keep]


def _cover(conn: Connection, series_id: int, lo: int, hi: int) -> list[Units]:
    """Chunks lo..hi as the coarsest summaries there are, in order."""
    if lo > hi:
        return []
    level = 0
    while level < LEVELS and FANOUT ** (level + 1) <= hi - lo + 1:
        level += 1
    return _cover_at(conn, series_id, level, lo, hi)


def _cover_at(conn: Connection, series_id: int, level: int, lo: int, hi: int) -> list[Units]:
    if lo > hi:
        return []
    if level == 0:
        return [_summary_rows(conn, series_id, 0, lo, hi)]
    size = FANOUT**level
    first, last = -(-lo // size), (hi + 1) // size - 1  # the summaries wholly inside
    if first > last:
        return _cover_at(conn, series_id, level - 1, lo, hi)
    found = _summary_rows(conn, series_id, level, first, last)
    # summaries are written in order, so those there are a prefix of first..last
    covered_to = (first + len(found)) * size - 1
    return [
        *_cover_at(conn, series_id, level - 1, lo, first * size - 1),
        found,
        *_cover_at(conn, series_id, level - 1, covered_to + 1, hi),
    ]


def _summary_rows(conn: Connection, series_id: int, level: int, lo: int, hi: int) -> Units:
    params = {"series_id": series_id, "level": level, "lo": lo, "hi": hi}
    return Units.of_rows(level, conn.execute(_SUMMARIES, params).all())


def _open(conn: Connection, series_id: int, units: Units, cut: np.ndarray) -> Units:
    """`units` with the summaries at `cut` replaced by what they summarise."""
    levels, seqs = units.columns["level"][cut], units.columns["seq"][cut]
    children: dict[tuple[int, int], Units] = {}
    for level in np.unique(levels).tolist():
        mine = seqs[levels == level].tolist()
        if level == 0:
            rows = conn.execute(_RAW_SOME, {"series_id": series_id, "seqs": mine}).all()
            for seq, first_step, points, steps, values in rows:
                children[(0, seq)] = Units.of_points(
                    *summaries.unpack(first_step, points, steps, values)
                )
        else:
            wanted = [s * FANOUT + k for s in mine for k in range(FANOUT)]
            params = {"series_id": series_id, "level": level - 1, "seqs": wanted}
            found = Units.of_rows(level - 1, conn.execute(_SUMMARIES_SOME, params).all())
            parents = found.columns["seq"] // FANOUT
            for seq in mine:
                at = np.flatnonzero(parents == seq)
                children[(level, seq)] = found.slice(int(at[0]), int(at[-1]) + 1)
    parts: list[Units] = []
    previous = 0
    for index, level, seq in zip(cut.tolist(), levels.tolist(), seqs.tolist(), strict=True):
        parts += [units.slice(previous, index), children[(level, seq)]]
        previous = index + 1
    parts.append(units.slice(previous, len(units)))
    return Units.join(parts)
