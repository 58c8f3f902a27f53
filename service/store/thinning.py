"""Thinning a curve held in memory: the first, the last, and each stretch's minimum and maximum.

The reference for what a thinned read keeps: `chunks.read` keeps the same points while
reading summaries for all but the stretches' edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def thin(
    steps: Sequence[int], values: Sequence[float | None], points: int
) -> tuple[list[int], list[float | None]]:
    """At most `points` points: the first, the last, and each stretch's minimum and maximum.

    The interior is cut into (points - 2) // 2 stretches of near-equal length; keeping both
    extremes of every stretch means a spike survives any amount of thinning.
    """
    if len(steps) <= points:
        return list(steps), list(values)
    order = kept_indices(np.array(values, dtype=float), points).tolist()  # None becomes NaN
    return [steps[i] for i in order], [values[i] for i in order]


def kept_indices(arr: np.ndarray, points: int) -> np.ndarray:
    """The indices `thin` keeps of `arr` (NaN where not finite), in order."""
    n = len(arr)
    if n <= points:
        return np.arange(n)
    if points < 2:
        raise ValueError("thinning keeps at least the first and the last point")
    keep = {0, n - 1}
    stretches = (points - 2) // 2
    if points == 3:  # room for one interior point: the most extreme one
        interior = arr[1:-1]
        if not np.all(np.isnan(interior)):
            keep.add(1 + int(np.nanargmax(np.abs(interior - np.nanmean(interior)))))
    elif stretches > 0:
        bounds = np.linspace(1, n - 1, stretches + 1).astype(int)
        keep.update(_stretch_extremes(arr, bounds).tolist())
    return np.array(sorted(keep), dtype=np.int64)


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
