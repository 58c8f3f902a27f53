"""Stretches of a curve as their summaries, and thinning that reads summaries for whole stretches.

A summary of consecutive points is what thinning needs of them: how many there are, the first
step, and the value and first step of the smallest and largest finite value (plus the count
and sum of the finite values, for the mean a 3-point thinning needs). Thinning keeps, of every
stretch of the read, the first index of its minimum and of its maximum (`thin` in curves.py):
a summary that lies inside one stretch stands in for all its points, and only summaries that
straddle a stretch's edge must be opened. Pure numpy: no database here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the columns of a summary, in the order the chunk table and `Units` hold them
FIELDS = (
    "first_step",
    "last_step",
    "points",
    "finite",
    "total",
    "min_value",
    "min_step",
    "max_value",
    "max_step",
)


@dataclass(frozen=True)
class Summary:
    """Consecutive points of a series; min and max are None where no value is finite."""

    first_step: int
    last_step: int
    points: int
    finite: int
    total: float
    min_value: float | None
    min_step: int | None
    max_value: float | None
    max_step: int | None

    def as_row(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in FIELDS}


def summarize(steps: np.ndarray, values: np.ndarray) -> Summary:
    """The summary of points (steps increasing, values NaN where not finite)."""
    finite = ~np.isnan(values)
    count = int(finite.sum())
    if count == 0:
        lo = hi = None
    else:
        filled = np.where(finite, values, np.inf)
        lo = int(np.argmin(filled))
        hi = int(np.argmax(np.where(finite, values, -np.inf)))
    return Summary(
        first_step=int(steps[0]),
        last_step=int(steps[-1]),
        points=len(steps),
        finite=count,
        total=float(values[finite].sum()),
        min_value=None if lo is None else float(values[lo]),
        min_step=None if lo is None else int(steps[lo]),
        max_value=None if hi is None else float(values[hi]),
        max_step=None if hi is None else int(steps[hi]),
    )


def merge(parts: Sequence[Summary]) -> Summary:
    """The summary of consecutive stretches, in order: on a tie the earlier one's step."""
    lows = [p for p in parts if p.min_value is not None]
    low = min(lows, key=lambda p: p.min_value or 0.0) if lows else None
    high = max(lows, key=lambda p: p.max_value or 0.0) if lows else None
    return Summary(
        first_step=parts[0].first_step,
        last_step=parts[-1].last_step,
        points=sum(p.points for p in parts),
        finite=sum(p.finite for p in parts),
        total=float(sum(p.total for p in parts)),
        min_value=None if low is None else low.min_value,
        min_step=None if low is None else low.min_step,
        max_value=None if high is None else high.max_value,
        max_step=None if high is None else high.max_step,
    )


def pack(steps: np.ndarray, values: np.ndarray) -> tuple[bytes | None, bytes]:
    """A chunk's arrays as stored: steps only where they are not first..last."""
    contiguous = int(steps[-1]) - int(steps[0]) + 1 == len(steps)
    packed_steps = None if contiguous else steps.astype("<i8").tobytes()
    return packed_steps, values.astype("<f8").tobytes()


def unpack(
    first_step: int, points: int, steps: bytes | None, values: bytes | None
) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's arrays from its row (`values` is null only above level 0)."""
    if values is None:
        raise ValueError("a summary holds no points to unpack")
    if steps is None:
        step_array = np.arange(first_step, first_step + points, dtype=np.int64)
    else:
        step_array = np.frombuffer(steps, dtype="<i8").astype(np.int64)
    return step_array, np.frombuffer(values, dtype="<f8").astype(np.float64)


def as_arrays(
    steps: Sequence[int], values: Sequence[float | None]
) -> tuple[np.ndarray, np.ndarray]:
    """A recorder's points as arrays; None and infinities become NaN (not finite, as stored)."""
    step_array = np.asarray(steps, dtype=np.int64)
    value_array = np.asarray(values, dtype=np.float64)  # None becomes NaN
    return step_array, np.where(np.isfinite(value_array), value_array, np.nan)


class Units:
    """The read's points, some as raw points and some as summaries, in order.

    Columnar: `level` is -1 for a raw point, 0 for a chunk's summary, k for a level-k summary;
    `seq` the row's place at its level (unused for raw points).
    """

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self.columns = columns

    @classmethod
    def of_rows(cls, level: int, rows: Sequence[Sequence[object]]) -> Units:
        """Summary rows `(seq, *FIELDS)`, nulls as NaN (min/max) or -1 (their steps)."""
        table = np.array(rows, dtype=object).reshape(len(rows), len(FIELDS) + 1)
        columns = {"level": np.full(len(rows), level, dtype=np.int64)}
        columns["seq"] = table[:, 0].astype(np.int64)
        for index, name in enumerate(FIELDS, start=1):
            column = table[:, index]
            if name.endswith("_value") or name == "total":
                columns[name] = np.array(
                    [np.nan if v is None else v for v in column], dtype=np.float64
                )
            else:
                columns[name] = np.array([-1 if v is None else v for v in column], dtype=np.int64)
        return cls(columns)

    @classmethod
    def of_points(cls, steps: np.ndarray, values: np.ndarray) -> Units:
        finite = ~np.isnan(values)
        n = len(steps)
        marked = np.where(finite, steps, -1)
        return cls(
            {
                "level": np.full(n, -1, dtype=np.int64),
                "seq": np.full(n, -1, dtype=np.int64),
                "first_step": steps,
                "last_step": steps,
                "points": np.ones(n, dtype=np.int64),
                "finite": finite.astype(np.int64),
                "total": np.where(finite, values, 0.0),
                "min_value": values,
                "min_step": marked,
                "max_value": values,
                "max_step": marked,
            }
        )

    @classmethod
    def join(cls, parts: Sequence[Units]) -> Units:
        names = parts[0].columns
        return cls({name: np.concatenate([p.columns[name] for p in parts]) for name in names})

    def __len__(self) -> int:
        return len(self.columns["level"])

    def slice(self, lo: int, hi: int) -> Units:
        return Units({name: column[lo:hi] for name, column in self.columns.items()})

    def starts(self) -> np.ndarray:
        """Each unit's index among the read's points."""
        points = self.columns["points"]
        return np.cumsum(points) - points


def stretch_bounds(n: int, points: int) -> np.ndarray:
    """The interior's stretches as `thin` cuts them: stretch k is [bounds[k], bounds[k + 1])."""
    stretches = (points - 2) // 2
    if stretches <= 1:  # 2 points keep no interior; 3 keep its most extreme point
        return np.array([1, n - 1], dtype=np.int64)
    return np.linspace(1, n - 1, stretches + 1).astype(np.int64)


def straddling(units: Units, bounds: np.ndarray) -> np.ndarray:
    """Indices of the summaries that some stretch edge cuts (they must be opened)."""
    starts = units.starts()
    ends = starts + units.columns["points"]
    after = np.searchsorted(bounds, starts, side="right")
    next_bound = np.append(bounds, np.iinfo(np.int64).max)[after]
    return np.flatnonzero((units.columns["level"] >= 0) & (next_bound < ends))


def kept(units: Units, bounds: np.ndarray, points: int) -> dict[int, float | None]:
    """What `thin` keeps of the read's points, by step, given units no stretch edge cuts and
    whose first and last units are raw points: the first, the last, and each stretch's
    extremes (first occurrences; a stretch with no finite value keeps its first point)."""
    c = units.columns
    out: dict[int, float | None] = {}
    for at in (0, len(units) - 1):
        value = float(c["min_value"][at])
        out[int(c["first_step"][at])] = None if np.isnan(value) else value
    interior = units.slice(1, len(units) - 1)
    if len(interior) == 0 or points == 2:
        return out
    if points == 3:
        out.update(_most_extreme(interior))
        return out
    starts = interior.starts() + 1
    first_units = np.searchsorted(starts, bounds[:-1], side="left")
    first_units = np.unique(first_units[first_units < len(interior)])
    for name, fill, reduce in (
        ("min", np.inf, np.minimum),
        ("max", -np.inf, np.maximum),
    ):
        out.update(_extremes(interior, first_units, name, fill, reduce))
    return out


def _extremes(
    units: Units, firsts: np.ndarray, name: str, fill: float, reduce: np.ufunc
) -> dict[int, float | None]:
    """Per stretch (its units start at `firsts`): the value and first step of its extreme."""
    c = units.columns
    values, steps = c[f"{name}_value"], c[f"{name}_step"]
    none = np.isnan(values)
    filled = np.where(none, fill, values)
    extreme = reduce.reduceat(filled, firsts)
    which = np.repeat(np.arange(len(firsts)), np.diff(np.append(firsts, len(units))))
    hits = ~none & (filled == extreme[which])
    index = np.arange(len(units))
    first_hit = np.minimum.reduceat(np.where(hits, index, len(units)), firsts)
    out: dict[int, float | None] = {}
    for stretch, hit in enumerate(first_hit):
        if hit == len(units):  # no finite value: the stretch's first point
            out.setdefault(int(c["first_step"][firsts[stretch]]), None)
        else:
            out[int(steps[hit])] = float(values[hit])
    return out


def _most_extreme(units: Units) -> dict[int, float | None]:
    """The interior point farthest from the interior's mean (`thin` with 3 points)."""
    c = units.columns
    finite = int(c["finite"].sum())
    if finite == 0:
        return {}
    mean = float(c["total"].sum()) / finite
    low = _first_extreme(units, "min", np.inf, np.argmin)
    high = _first_extreme(units, "max", -np.inf, np.argmax)
    candidates = sorted([low, high], key=lambda sv: (-abs(sv[1] - mean), sv[0]))
    step, value = candidates[0]
    return {step: value}


def _first_extreme(units: Units, name: str, fill: float, pick: object) -> tuple[int, float]:
    c = units.columns
    values = c[f"{name}_value"]
    at = int(pick(np.where(np.isnan(values), fill, values)))  # type: ignore[operator]
    return int(c[f"{name}_step"][at]), float(values[at])
