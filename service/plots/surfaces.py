"""The test functions of `minimize` jobs (API.md 3.6) in numpy, for drawing their contours.

The worker's torch versions (`worker.training.objectives`) are the ground truth; these are
the same formulas over whole grids at once, so the API process needs no torch to draw them.
An objective is given as its spec's JSON (`{"type": "rosenbrock", "a": 1.0, "b": 100.0}`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: f(u, v) over arrays of the same shape
Function2D = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Himmelblau's four minima (all of value 0)
HIMMELBLAU_MINIMA = [
    (3.0, 2.0),
    (-2.805118, 3.131312),
    (-3.779310, -3.283186),
    (3.584428, -1.848126),
]
#: objectives whose contours want log-spaced levels: polynomials of degree 4 and more rise so
#: steeply that evenly spaced levels crowd at the edges and leave the valley one flat colour
STEEP = frozenset({"rosenbrock", "beale", "himmelblau"})


def _beale(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2


def _himmelblau(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u**2 + v - 11) ** 2 + (u + v**2 - 7) ** 2


def _booth(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u + 2 * v - 7) ** 2 + (2 * u + v - 5) ** 2


def _saddle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u**2 - v**2


_FIXED: dict[str, Function2D] = {
    "beale": _beale,
    "himmelblau": _himmelblau,
    "booth": _booth,
    "saddle": _saddle,
}


def function_2d(objective: Mapping[str, Any]) -> Function2D:
    """f(u, v) of a 2-D objective, elementwise over arrays."""
    kind = objective["type"]
    if kind == "quadratic":
        s0, s1 = _scales(objective, 2)
        return lambda u, v: s0 * u**2 + s1 * v**2
    if kind == "rosenbrock":
        a, b = float(objective.get("a", 1.0)), float(objective.get("b", 100.0))
        return lambda u, v: (a - u) ** 2 + b * (v - u**2) ** 2
    return _FIXED[kind]


def quadratic_1d(objective: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """f(x) of a 1-D quadratic, elementwise."""
    (scale,) = _scales(objective, 1)
    return lambda x: scale * x**2


def landmarks(objective: Mapping[str, Any]) -> tuple[str, list[tuple[float, float]]]:
    """What a 2-D objective's known points are, and where: its minima, or a saddle point."""
    kind = objective["type"]
    if kind == "rosenbrock":
        a = float(objective.get("a", 1.0))
        return "minimum", [(a, a * a)]
    if kind == "himmelblau":
        return "minima", list(HIMMELBLAU_MINIMA)
    if kind == "beale":
        return "minimum", [(3.0, 0.5)]
    if kind == "booth":
        return "minimum", [(1.0, 3.0)]
    if kind == "quadratic" and all(s > 0 for s in _scales(objective, 2)):
        return "minimum", [(0.0, 0.0)]
    return "saddle point" if kind == "saddle" else "stationary point", [(0.0, 0.0)]


def _scales(objective: Mapping[str, Any], n: int) -> list[float]:
    scales = objective.get("scales")
    return [float(s) for s in scales] if scales is not None else [1.0] * n
