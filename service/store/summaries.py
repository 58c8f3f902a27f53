"""Stretches of a curve as their summaries, and thinning that opens only the summaries a
stretch's edge cuts.

A summary of consecutive points is what thinning needs of them: how many there are, their
first and last step, and the value and first step of the smallest and largest finite value
(plus the count and sum of the finite values, for the mean a 3-point thinning needs). A point
is a summary of one. Thinning keeps, of every stretch of a read, the first index of its minimum
and of its maximum (`thinning.thin`): a summary that lies inside one stretch stands in for all
its points. One kernel, `reduce`, merges consecutive summaries segment by segment, whether they
are points becoming a block, blocks a chunk, chunks a summary above them, or the units of a
read becoming its stretches' extremes. Pure numpy: no database here.
"""

from __future__ import annotations

import numpy as np

#: a summary as stored in a row's `parts` (little-endian, 48 bytes; steps are 32-bit, as in
#: the database's columns); min/max steps are -1 and their values NaN where no value is finite
PACKED = np.dtype(
    [
        ("first_step", "<i4"),
        ("last_step", "<i4"),
        ("points", "<i4"),
        ("finite", "<i4"),
        ("total", "<f8"),
        ("min_value", "<f8"),
        ("min_step", "<i4"),
        ("max_value", "<f8"),
        ("max_step", "<i4"),
    ]
)
FIELDS: tuple[str, ...] = tuple(PACKED.fields or ())
#: a summary in a read: where it comes from, to open it (`level`: a chunk is 0, a summary of
#: chunks 1, 2, ...; POINT for points and runs of them), its place at that level (`seq`) and
#: the index of its first point among the read's (`start`)
UNIT = np.dtype([("level", "<i8"), ("seq", "<i8"), ("start", "<i8"), *PACKED.descr])
POINT = -1


def of_points(
    steps: np.ndarray, values: np.ndarray, *, seq: np.ndarray | None = None
) -> np.ndarray:
    """Points as units of one (values NaN where not finite)."""
    units = np.zeros(len(steps), dtype=UNIT)
    finite = ~np.isnan(values)
    units["level"] = POINT
    units["seq"] = -1 if seq is None else seq
    units["first_step"] = units["last_step"] = steps
    units["points"] = 1
    units["finite"] = finite
    units["total"] = np.where(finite, values, 0.0)
    units["min_value"] = units["max_value"] = values
    units["min_step"] = units["max_step"] = np.where(finite, steps, -1)
    return units


def reduce(units: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The summary of each segment of consecutive units; segment k is units[starts[k]:
    starts[k + 1]] (the last runs to the end). `starts` is increasing, from 0 or later. On a
    tie, the first unit's extreme, as np.nanargmin and np.nanargmax pick."""
    ends = np.append(starts[1:], len(units))
    out = np.zeros(len(starts), dtype=PACKED)
    out["first_step"] = units["first_step"][starts]
    out["last_step"] = units["last_step"][ends - 1]
    for name in ("points", "finite", "total"):
        out[name] = np.add.reduceat(units[name], starts)
    which = np.repeat(np.arange(len(starts)), ends - starts)  # each unit's segment
    index = np.arange(len(units))
    for name, fill, extreme in (("min", np.inf, np.minimum), ("max", -np.inf, np.maximum)):
        values = units[f"{name}_value"]
        none = np.isnan(values)
        filled = np.where(none, fill, values)
        best = extreme.reduceat(filled, starts)
        hits = ~none & (filled == best[which])
        first = np.minimum.reduceat(np.where(hits, index, len(units)), starts)
        found = first < len(units)
        at = np.where(found, first, 0)
        out[f"{name}_value"] = np.where(found, values[at], np.nan)
        out[f"{name}_step"] = np.where(found, units[f"{name}_step"][at], -1)
    return out


def reduce_points(steps: np.ndarray, values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """`reduce` of points (values NaN where not finite), straight from their arrays."""
    ends = np.append(starts[1:], len(steps))
    out = np.zeros(len(starts), dtype=PACKED)
    out["first_step"] = steps[starts]
    out["last_step"] = steps[ends - 1]
    out["points"] = ends - starts
    finite = ~np.isnan(values)
    out["finite"] = np.add.reduceat(finite, starts)
    out["total"] = np.add.reduceat(np.where(finite, values, 0.0), starts)
    which = np.repeat(np.arange(len(starts)), ends - starts)
    index = np.arange(len(values))
    for name, fill, extreme in (("min", np.inf, np.minimum), ("max", -np.inf, np.maximum)):
        filled = np.where(finite, values, fill)
        best = extreme.reduceat(filled, starts)
        hits = finite & (filled == best[which])
        first = np.minimum.reduceat(np.where(hits, index, len(values)), starts)
        found = first < len(values)
        at = np.where(found, first, 0)
        out[f"{name}_value"] = np.where(found, values[at], np.nan)
        out[f"{name}_step"] = np.where(found, steps[at], -1)
    return out


def as_units(packed: np.ndarray, level: int, first_seq: int) -> np.ndarray:
    units = np.zeros(len(packed), dtype=UNIT)
    units["level"] = level
    units["seq"] = first_seq + np.arange(len(packed))
    for name in FIELDS:
        units[name] = packed[name]
    return units


def pack_values(steps: np.ndarray, values: np.ndarray) -> tuple[bytes | None, bytes]:
    """A chunk's arrays as stored: steps only where they are not first..last."""
    contiguous = int(steps[-1]) - int(steps[0]) + 1 == len(steps)
    packed_steps = None if contiguous else steps.astype("<i8").tobytes()
    return packed_steps, values.astype("<f8").tobytes()


def unpack_values(
    first_step: int, points: int, steps: bytes | None, values: bytes | None
) -> tuple[np.ndarray, np.ndarray]:
    if values is None:
        raise ValueError("a summary above the chunks holds no points")
    if steps is None:
        step_array = np.arange(first_step, first_step + points, dtype=np.int64)
    else:
        step_array = np.frombuffer(steps, dtype="<i8").astype(np.int64)
    return step_array, np.frombuffer(values, dtype="<f8").astype(np.float64)


def as_arrays(steps: object, values: object) -> tuple[np.ndarray, np.ndarray]:
    """A recorder's points as arrays; None and infinities become NaN (not finite, as stored)."""
    step_array = np.asarray(steps, dtype=np.int64)
    value_array = np.asarray(values, dtype=np.float64)  # None becomes NaN
    return step_array, np.where(np.isfinite(value_array), value_array, np.nan)


# --- thinning over units -----------------------------------------------------------------


def stretch_bounds(n: int, points: int) -> np.ndarray:
    """The interior's stretches as `thin` cuts them: stretch k is [bounds[k], bounds[k + 1]);
    always from 1 to n - 1, so the first and the last point are units of their own."""
    stretches = (points - 2) // 2
    if stretches <= 1:  # 2 points keep no interior; 3 its most extreme point; 4-5 one stretch
        return np.array([1, n - 1], dtype=np.int64)
    return np.linspace(1, n - 1, stretches + 1).astype(np.int64)


def straddling(units: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Indices of the summaries that a stretch's edge cuts: they must be opened."""
    starts = units["start"]
    ends = starts + units["points"]
    after = np.searchsorted(bounds, starts, side="right")
    next_bound = np.append(bounds, np.iinfo(np.int64).max)[after]
    return np.flatnonzero((units["level"] != POINT) & (next_bound < ends))


def kept(units: np.ndarray, bounds: np.ndarray, points: int) -> dict[int, float]:
    """What `thin` keeps of a read's points, by step (NaN where not finite), given units that
    no stretch's edge cuts: the first, the last, and each stretch's extremes (a stretch with no
    finite value keeps its first point)."""
    out = {int(units["first_step"][at]): float(units["min_value"][at]) for at in (0, -1)}
    interior = units[1:-1]
    if len(interior) == 0 or points == 2:
        return out
    firsts = np.unique(np.searchsorted(interior["start"], bounds[:-1], side="left"))
    stretches = reduce(interior, firsts[firsts < len(interior)])
    if points == 3:  # the one interior point farthest from the interior's mean
        out.update(_most_extreme(stretches[0]))
        return out
    none = stretches["finite"] == 0
    for name in ("min", "max"):
        found = ~none
        out.update(
            zip(
                stretches[f"{name}_step"][found].tolist(),
                stretches[f"{name}_value"][found].tolist(),
                strict=True,
            )
        )
    for step in stretches["first_step"][none].tolist():
        out.setdefault(step, np.nan)
    return out


def _most_extreme(interior: np.void) -> dict[int, float]:
    if interior["finite"] == 0:
        return {}
    mean = float(interior["total"]) / int(interior["finite"])
    low, high = (
        (int(interior[f"{n}_step"]), float(interior[f"{n}_value"])) for n in ("min", "max")
    )
    step, value = min(low, high, key=lambda sv: (-abs(sv[1] - mean), sv[0]))
    return {step: value}
