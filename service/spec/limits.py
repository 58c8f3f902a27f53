"""The limits a deployment sets on a job's size, checked apart from the spec's own rules.

Validating a spec says whether it makes sense; `check` says whether this deployment takes it.
The limits come in with the call (the API and the worker pass their settings' values), so a
spec validates the same whatever the process's environment.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pydantic import ValidationError

from service.spec import costs
from service.spec.base import FieldError, OverBudget
from service.spec.data import n_classes
from service.spec.job import FitSpec, MinimizeSpec
from service.spec.models import MLPModel

#: the field of each data source that sets its number of classes
_CLASSES_FIELD = {"inline": "y", "dataset": "id", "classification": "n_classes"}


@dataclass(frozen=True)
class Limits:
    """The defaults are the settings' (service/config.py, DESCENT_MAX_*), but for
    worker_memory, whose setting defaults to half the machine's memory."""

    max_hidden_layers: int = 16
    max_hidden_units: int = 8192
    max_rows: int = 1_000_000
    max_steps: int = 10_000_000
    max_classes: int = 10_000
    max_values: int = 100_000_000
    max_parameters: int = 50_000_000
    worker_memory: int = 8 << 30

    @classmethod
    def of(cls, settings: Any) -> Limits:
        """The limits a settings object (service.config.Settings) sets."""
        return cls(**{f.name: int(getattr(settings, f.name)) for f in fields(cls)})


def check(spec: FitSpec | MinimizeSpec, limits: Limits) -> None:
    """Raise pydantic's ValidationError, located as the spec's own errors are, at the first
    limit the job passes; its message names the value, the limit and the variable."""
    try:
        if isinstance(spec, FitSpec):
            _check_fit(spec, limits)
        else:
            _check_minimize(spec, limits)
    except FieldError as exc:
        raise ValidationError.from_exception_data(
            "JobSpec",
            [{"type": "value_error", "loc": (spec.task,), "input": {}, "ctx": {"error": exc}}],
        ) from None


def _check_fit(spec: FitSpec, limits: Limits) -> None:
    if isinstance(spec.model, MLPModel):
        _check_layers(spec.model, limits)
    if spec.loss is None:
        return  # a dataset job before its dataset is known: checked on the second pass
    if spec.loss != "mse":
        _check_classes(spec, limits)
    _at_most(
        spec.n_samples,
        limits.max_rows,
        ("data",),
        f"data has {spec.n_samples} rows",
        "DESCENT_MAX_ROWS",
    )
    said = f"epochs x batches per epoch is {spec.total_steps} optimizer steps"
    _at_most(spec.total_steps, limits.max_steps, ("epochs",), said, "DESCENT_MAX_STEPS")
    _check_cost(costs.fit_cost(spec), limits)


def _check_layers(model: MLPModel, limits: Limits) -> None:
    where, layers = ("model", "mlp", "hidden"), len(model.hidden)
    said = f"model.hidden has {layers} layers"
    _at_most(layers, limits.max_hidden_layers, where, said, "DESCENT_MAX_HIDDEN_LAYERS")
    widest = max(model.hidden, default=0)
    said = f"model.hidden has a layer of {widest} units"
    _at_most(widest, limits.max_hidden_units, where, said, "DESCENT_MAX_HIDDEN_UNITS")


def _check_classes(spec: FitSpec, limits: Limits) -> None:
    classes, most = n_classes(spec.data), limits.max_classes
    _at_most(
        classes,
        most,
        ("data", spec.data.type, _CLASSES_FIELD.get(spec.data.type, "type")),
        f"the class labels run to {classes - 1}, so the model would have {classes} outputs",
        "DESCENT_MAX_CLASSES",
        unit=" classes",
        then=f": labels must be integers from 0 to {most - 1}",
    )


def _check_cost(cost: costs.Cost, limits: Limits) -> None:
    said = f"the model has {cost.parameters} parameters"
    _at_most(cost.parameters, limits.max_parameters, ("model",), said, "DESCENT_MAX_PARAMETERS")
    said = f"the data has {cost.values} values (rows x features)"
    _at_most(cost.values, limits.max_values, ("data",), said, "DESCENT_MAX_VALUES")
    budget = limits.worker_memory
    if cost.peak_bytes > budget:
        raise OverBudget(
            (costs.largest_part(cost),),
            f"the job's estimated peak memory is {cost.describe()}; a worker may use "
            f"{costs.gib(budget)} (DESCENT_WORKER_MEMORY, {budget} bytes)",
        )


def _check_minimize(spec: MinimizeSpec, limits: Limits) -> None:
    said = f"steps is {spec.steps}"
    _at_most(spec.steps, limits.max_steps, ("steps",), said, "DESCENT_MAX_STEPS")
    # the path keeps x at every step: steps x dimensions values to store
    path_values = (spec.steps + 1) * len(spec.x0)
    _at_most(
        path_values,
        limits.max_values,
        ("steps",),
        f"the trajectory would hold (steps + 1) x len(x0) = {path_values} values",
        "DESCENT_MAX_VALUES",
        then=": take fewer steps or fewer dimensions",
    )


def _at_most(
    value: int,
    most: int,
    loc: tuple[str, ...],
    said: str,
    variable: str,
    *,
    unit: str = "",
    then: str = "",
) -> None:
    """FieldError at `loc` where `value` passes `most`: what was asked, the limit, its variable."""
    if value > most:
        raise FieldError(loc, f"{said}; the limit is {most}{unit} ({variable}){then}")
