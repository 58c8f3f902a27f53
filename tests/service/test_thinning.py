"""Thinning keeps exactly what the plain stretch-by-stretch loop keeps.

`curves.thin` finds every stretch's extremes in a few whole-array passes; the reference here
is the loop it replaced, one `np.nanargmin` and `np.nanargmax` per stretch.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.store import curves


def _reference(values: list[float | None], points: int) -> list[int]:
    """The kept indices, by the plain loop over stretches."""
    arr = np.array([np.nan if v is None else v for v in values], dtype=float)
    n, keep = len(arr), {0, len(arr) - 1}
    bounds = np.linspace(1, n - 1, (points - 2) // 2 + 1).astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        part = arr[lo:hi]
        if len(part) == 0:
            continue
        if np.all(np.isnan(part)):
            keep.add(int(lo))
        else:
            keep.update((int(lo + np.nanargmin(part)), int(lo + np.nanargmax(part))))
    return sorted(keep)


# stored values are finite or None (not finite); few distinct values, so ties are common
VALUES = st.one_of(st.none(), st.sampled_from([-1.0, 0.0, -0.0, 2.5]), st.floats(-1e9, 1e9))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(VALUES, min_size=5, max_size=400), points=st.integers(4, 60))
def test_thin_matches_the_stretch_by_stretch_loop(values: list[float | None], points: int) -> None:
    steps = [3 * i + 1 for i in range(len(values))]
    kept_steps, kept_values = curves.thin(steps, values, points)
    if len(values) <= points:
        assert kept_steps == steps
        return
    expected = _reference(values, points)
    assert kept_steps == [steps[i] for i in expected]
    assert kept_values == [values[i] for i in expected]


def test_thin_runs_of_nulls_keep_their_first_point() -> None:
    values: list[float | None] = [1.0] + [None] * 50 + [5.0, 3.0] + [None] * 46 + [2.0]
    kept_steps, _ = curves.thin(list(range(100)), values, 10)
    assert kept_steps == _reference(values, 10)  # the steps are the indices here
