"""Optimizers (API.md 3.4)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from service.spec.base import (
    MAX_HYPER,
    FieldError,
    Fraction,
    NonNegative,
    Positive,
    SpecModel,
    _example,
)

# --- optimizers (3.4) ---------------------------------------------------------------------


class SGD(SpecModel):
    """torch.optim.SGD."""

    model_config = _example({"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True})

    type: Literal["sgd"] = "sgd"
    lr: Positive = 0.001
    momentum: NonNegative = 0.0
    dampening: Annotated[float, Field(ge=-MAX_HYPER, le=MAX_HYPER)] = 0.0
    nesterov: bool = False
    weight_decay: NonNegative = 0.0

    @model_validator(mode="after")
    def _nesterov(self) -> SGD:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise FieldError(
                ("nesterov",), "optimizer.nesterov needs optimizer.momentum > 0 and dampening 0"
            )
        return self


class Momentum(SpecModel):
    """The exponential-average form: v <- beta*v + (1-beta)*g, theta <- theta - lr*v."""

    model_config = _example({"type": "momentum", "lr": 0.1, "beta": 0.9})

    type: Literal["momentum"] = "momentum"
    lr: Positive = 0.01
    beta: Fraction = 0.9


class Adagrad(SpecModel):
    """torch.optim.Adagrad."""

    model_config = _example({"type": "adagrad", "lr": 0.1})

    type: Literal["adagrad"] = "adagrad"
    lr: Positive = 0.01
    lr_decay: NonNegative = 0.0
    weight_decay: NonNegative = 0.0
    initial_accumulator_value: NonNegative = 0.0
    eps: NonNegative = 1e-10


class RMSprop(SpecModel):
    """torch.optim.RMSprop."""

    model_config = _example({"type": "rmsprop", "lr": 0.01, "alpha": 0.9})

    type: Literal["rmsprop"] = "rmsprop"
    lr: Positive = 0.01
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.99
    eps: NonNegative = 1e-8
    weight_decay: NonNegative = 0.0
    momentum: NonNegative = 0.0
    centered: bool = False


Betas = tuple[Fraction, Fraction]


class Adam(SpecModel):
    """torch.optim.Adam."""

    model_config = _example({"type": "adam", "lr": 0.001, "betas": [0.9, 0.999]})

    type: Literal["adam"] = "adam"
    lr: Positive = 0.001
    betas: Betas = Field((0.9, 0.999), strict=False)
    eps: NonNegative = 1e-8
    weight_decay: NonNegative = 0.0
    amsgrad: bool = False


class AdamW(SpecModel):
    """torch.optim.AdamW."""

    model_config = _example({"type": "adamw", "lr": 0.001, "weight_decay": 0.01})

    type: Literal["adamw"] = "adamw"
    lr: Positive = 0.001
    betas: Betas = Field((0.9, 0.999), strict=False)
    eps: NonNegative = 1e-8
    weight_decay: NonNegative = 0.01
    amsgrad: bool = False


class ISTA(SpecModel):
    """Proximal gradient descent: a gradient step on the smooth part, then soft-thresholding
    by `lr * penalty.l1`. Full batch only."""

    model_config = _example({"type": "ista", "lr": 0.1})

    type: Literal["ista"] = "ista"
    lr: Positive = 0.01


class FISTA(SpecModel):
    """ISTA with Nesterov's acceleration (Beck and Teboulle). Full batch only."""

    model_config = _example({"type": "fista", "lr": 0.1})

    type: Literal["fista"] = "fista"
    lr: Positive = 0.01


class CoordinateDescent(SpecModel):
    """Exact minimisation along one coordinate at a time; one step is one sweep over all.
    Linear model, mse, full batch."""

    model_config = _example({"type": "coordinate_descent"})

    type: Literal["coordinate_descent"] = "coordinate_descent"


class ADMM(SpecModel):
    """The alternating direction method of multipliers for the lasso; one step is one
    iteration. Linear model, mse, full batch."""

    model_config = _example({"type": "admm", "rho": 1.0})

    type: Literal["admm"] = "admm"
    rho: Positive = 1.0


GradientOptimizerSpec = Annotated[
    SGD | Momentum | Adagrad | RMSprop | Adam | AdamW, Field(discriminator="type")
]
OptimizerSpec = Annotated[
    SGD | Momentum | Adagrad | RMSprop | Adam | AdamW | ISTA | FISTA | CoordinateDescent | ADMM,
    Field(discriminator="type"),
]
#: optimizers that take the whole training set each step
FULL_BATCH_ONLY = ("ista", "fista", "coordinate_descent", "admm")
#: optimizers that solve the linear least-squares problem directly, without gradients
SOLVERS = ("coordinate_descent", "admm")
