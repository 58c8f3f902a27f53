"""Models (API.md 3.1)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from service.spec.base import INT64_MAX, SpecModel, _example

# --- models (3.1) -------------------------------------------------------------------------

Init = Literal["default", "zeros"]


class LinearModel(SpecModel):
    """`y = x W^T + b`, regression."""

    model_config = _example({"type": "linear", "bias": True})

    type: Literal["linear"] = "linear"
    bias: bool = True
    #: `default` is torch's initialisation; `zeros` starts every parameter at 0 (the seeds' w = 0)
    init: Init = "default"


class LogisticModel(SpecModel):
    """Binary classification with a sigmoid output."""

    model_config = _example({"type": "logistic"})

    type: Literal["logistic"] = "logistic"
    bias: bool = True
    init: Init = "default"


class SoftmaxModel(SpecModel):
    """Multiclass classification (multinomial logistic regression)."""

    model_config = _example({"type": "softmax"})

    type: Literal["softmax"] = "softmax"
    bias: bool = True
    init: Init = "default"


class MLPModel(SpecModel):
    """Linear -> activation -> ... -> Linear."""

    model_config = _example({"type": "mlp", "hidden": [128, 64], "activation": "tanh"})

    type: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1, le=INT64_MAX)]] = Field(default_factory=lambda: [128])
    activation: Literal["relu", "sigmoid", "tanh"] = "relu"
    bias: bool = True
    init: Init = "default"


ModelSpec = Annotated[
    LinearModel | LogisticModel | SoftmaxModel | MLPModel, Field(discriminator="type")
]
