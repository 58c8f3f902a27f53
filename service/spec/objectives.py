"""Test functions a minimize job follows an optimizer over (API.md 3.6)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from service.spec.base import SpecModel, Value, _example

# --- minimize jobs (3.6) ------------------------------------------------------------------


class Quadratic(SpecModel):
    """`f(x) = sum(scales_i * x_i^2)`, any dimension; `scales` default all 1."""

    model_config = _example({"type": "quadratic", "scales": [1.0, 10.0]})

    type: Literal["quadratic"] = "quadratic"
    scales: list[Value] | None = None


class Rosenbrock(SpecModel):
    """`(a - x)^2 + b (y - x^2)^2`, minimum 0 at (a, a^2)."""

    model_config = _example({"type": "rosenbrock", "a": 1.0, "b": 100.0})

    type: Literal["rosenbrock"] = "rosenbrock"
    a: Value = 1.0
    b: Value = 100.0


class Beale(SpecModel):
    """Beale's function, minimum 0 at (3, 0.5)."""

    model_config = _example({"type": "beale"})

    type: Literal["beale"] = "beale"


class Himmelblau(SpecModel):
    """Himmelblau's function: four minima of 0, one at (3, 2)."""

    model_config = _example({"type": "himmelblau"})

    type: Literal["himmelblau"] = "himmelblau"


class Booth(SpecModel):
    """Booth's function, minimum 0 at (1, 3)."""

    model_config = _example({"type": "booth"})

    type: Literal["booth"] = "booth"


class Saddle(SpecModel):
    """`x^2 - y^2`: a saddle at the origin, unbounded below."""

    model_config = _example({"type": "saddle"})

    type: Literal["saddle"] = "saddle"


ObjectiveSpec = Annotated[
    Quadratic | Rosenbrock | Beale | Himmelblau | Booth | Saddle, Field(discriminator="type")
]
