"""What every spec part shares: strictness, bounds on numbers and text, errors naming a field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
)

#: rows in scikit-learn's 8x8 digits set
DIGITS_SAMPLES = 1797
DIGITS_FEATURES = 64
DIGITS_CLASSES = 10

LossName = Literal["mse", "bce", "cross_entropy"]
#: the integers the service stores and serves: JSON columns and responses hold 64-bit integers
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: text the service stores: PostgreSQL's text holds no NUL character, and a pattern also makes
#: pydantic refuse lone surrogates, which no UTF-8 text holds
TEXT_PATTERN = r"^[^\x00]*$"
#: `cuda:N` with a short N, so the device fits its column
DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]{1,4})?)$"

#: the largest magnitude of a number the data or a starting point may hold: its square (1e24)
#: and sums of a million such squares stay far inside float32's 3.4e38, so a loss that overflows
#: is the optimizer's doing, not the input's
MAX_VALUE = 1e12
#: the largest hyper-parameter (a learning rate, a decay, a penalty weight)
MAX_HYPER = 1e6

Positive = Annotated[float, Field(gt=0, le=MAX_HYPER)]
NonNegative = Annotated[float, Field(ge=0, le=MAX_HYPER)]
#: a number of the data, a target or a starting point
Value = Annotated[float, Field(ge=-MAX_VALUE, le=MAX_VALUE)]
Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class FieldError(ValueError):
    """A rule between fields, raised by a model's validator, that belongs to one of them.

    pydantic locates a model validator's error at the model; `locate_errors` moves it to
    `loc`, relative to that model, so the 422 names the field to change.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class OverBudget(FieldError):
    """A job whose estimated peak memory passes what a worker may use (DESCENT_WORKER_MEMORY)."""


def _cause(error: Mapping[str, Any]) -> Any:
    """The exception a validator raised for `error`, where one did."""
    return (error.get("ctx") or {}).get("error")


def over_budget(exc: ValidationError) -> OverBudget | None:
    """The memory refusal among a validation's errors, if there is one."""
    refusals = [c for c in map(_cause, exc.errors()) if isinstance(c, OverBudget)]
    return refusals[0] if refusals else None


def locate_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's (or FastAPI's) errors with each FieldError moved to the field it names."""
    located = []
    for error in errors:
        if isinstance(cause := _cause(error), FieldError):
            error = {**error, "loc": (*error["loc"], *cause.loc)}
        located.append(dict(error))
    return located


class SpecModel(BaseModel):
    """Base of every spec part: unknown fields and non-finite numbers are refused, and so is a
    value of another type than the schema's (`0` for `false`, `"5"` for `5`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _example(example: dict[str, Any]) -> ConfigDict:
    """A spec part's settings with the example /docs shows for it."""
    return ConfigDict(
        extra="forbid", allow_inf_nan=False, strict=True, json_schema_extra={"examples": [example]}
    )
