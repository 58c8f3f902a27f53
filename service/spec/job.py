"""The job spec (API.md section 3): `fit` or `minimize`, every default filled in.

A spec that validates here is one a worker can train: cross-field rules (a loss that fits the
model and the data, class labels) are checked at submission, so a bad spec is a 422 that
names the field and nothing is stored. Limits on size are checked apart (`spec.limits`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)

from service.spec.base import (
    DEVICE_PATTERN,
    INT64_MAX,
    TEXT_PATTERN,
    FieldError,
    Fraction,
    LossName,
    SpecModel,
    Value,
    _example,
)
from service.spec.data import DatasetData, DataSpec, DigitsData, data_rows
from service.spec.losses import Penalty, resolve_loss
from service.spec.models import MLPModel, ModelSpec
from service.spec.objectives import ObjectiveSpec, Quadratic
from service.spec.optimizers import (
    FULL_BATCH_ONLY,
    SOLVERS,
    Adam,
    GradientOptimizerSpec,
    OptimizerSpec,
)
from service.spec.schedules import CosineSchedule, ScheduleSpec

# --- the job --------------------------------------------------------------------------------

_EXAMPLE: dict[str, Any] = {
    "name": "digits-adam",
    "task": "fit",
    "seed": 0,
    "device": "auto",
    "model": {"type": "mlp", "hidden": [128], "activation": "relu"},
    "data": {"type": "digits"},
    "optimizer": {"type": "adam", "lr": 0.001},
    "batch_size": 64,
    "epochs": 20,
}


class _Job(SpecModel):
    """What every task's spec starts with; `task` is each one's own literal."""

    name: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN)
    task: str
    seed: int = Field(0, ge=0, le=2**32 - 1)
    device: str = Field("auto", pattern=DEVICE_PATTERN)


class FitSpec(_Job):
    """Train a model on data (`task: fit`)."""

    model_config = _example(_EXAMPLE)

    task: Literal["fit"] = "fit"
    #: the arithmetic of the training loop; float64 for comparisons to 1e-9
    dtype: Literal["float32", "float64"] = "float32"
    model: ModelSpec = Field(default_factory=MLPModel)
    #: filled in from the model and the data when omitted (3.2)
    loss: LossName | None = None
    data: DataSpec = Field(default_factory=DigitsData)
    penalty: Penalty = Field(default_factory=Penalty)
    optimizer: OptimizerSpec = Field(default_factory=Adam)
    schedule: ScheduleSpec | None = None
    #: null: the whole training set each step; 1: stochastic; k: mini-batch
    batch_size: int | None = Field(64, ge=1, le=INT64_MAX)
    epochs: int = Field(20, ge=1, le=INT64_MAX)
    shuffle: bool = True
    validation_split: Fraction = 0.2
    #: `manual`: hand-derived backpropagation, checked against autograd at the start
    gradients: Literal["autograd", "manual"] = "autograd"

    @model_validator(mode="after")
    def _resolve(self) -> FitSpec:
        if isinstance(self.data, DatasetData) and self.data.facts is None:
            return self  # checked on the second pass, once the dataset is known
        self.loss = resolve_loss(self.model.type, self.loss, self.data)
        _check_optimizer(self)
        n_train = self.n_train
        if n_train < 1:
            raise FieldError(
                ("validation_split",),
                f"validation_split {self.validation_split} leaves no training rows out of "
                f"{self.n_samples}",
            )
        if isinstance(self.schedule, CosineSchedule) and self.schedule.t_max is None:
            self.schedule.t_max = self.epochs
        return self

    @property
    def n_samples(self) -> int:
        return data_rows(self.data)

    @property
    def n_val(self) -> int:
        return math.floor(self.n_samples * self.validation_split)

    @property
    def n_train(self) -> int:
        return self.n_samples - self.n_val

    @property
    def steps_per_epoch(self) -> int:
        if self.batch_size is None:
            return 1
        return math.ceil(self.n_train / self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def _check_optimizer(spec: FitSpec) -> None:
    """The lasso solvers' conditions (API.md 3.4)."""
    kind = spec.optimizer.type
    if kind in FULL_BATCH_ONLY and spec.batch_size is not None:
        raise FieldError(
            ("batch_size",),
            f"optimizer {kind!r} takes the whole training set each step: set batch_size to "
            f"null, not {spec.batch_size}",
        )
    if kind in SOLVERS:
        if spec.model.type != "linear" or spec.loss != "mse":
            raise FieldError(
                ("model" if spec.model.type != "linear" else "loss",),
                f"optimizer {kind!r} solves linear least squares: it needs model 'linear' "
                f"and loss 'mse', not model {spec.model.type!r} with loss {spec.loss!r}",
            )
        if spec.gradients == "manual":
            raise FieldError(
                ("gradients",), f"optimizer {kind!r} uses no gradients: drop gradients 'manual'"
            )


_MINIMIZE_EXAMPLE: dict[str, Any] = {
    "task": "minimize",
    "objective": {"type": "quadratic"},
    "x0": [10.0],
    "optimizer": {"type": "momentum", "lr": 0.1, "beta": 0.9},
    "steps": 20,
}


class MinimizeSpec(_Job):
    """Follow an optimizer over a test function (`task: minimize`), in float64."""

    model_config = _example(_MINIMIZE_EXAMPLE)

    task: Literal["minimize"] = "minimize"
    objective: ObjectiveSpec
    x0: list[Value] = Field(min_length=1, max_length=10_000)
    optimizer: GradientOptimizerSpec = Field(default_factory=Adam)
    steps: int = Field(ge=1, le=INT64_MAX)
    #: accepted as a fit job's is; an objective's gradients always come from autograd
    gradients: Literal["autograd"] = "autograd"

    @field_validator("gradients", mode="before")
    @classmethod
    def _autograd_only(cls, value: Any) -> Any:
        if value == "manual":
            raise ValueError(
                "a minimize job's gradients come from autograd (its objectives have no "
                "hand-derived backward); drop gradients 'manual'"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MinimizeSpec:
        objective = self.objective
        if isinstance(objective, Quadratic):
            if objective.scales is None:
                objective.scales = [1.0] * len(self.x0)
            elif len(objective.scales) != len(self.x0):
                raise FieldError(
                    ("objective", "scales"),
                    f"objective.scales has {len(objective.scales)} values but x0 has "
                    f"{len(self.x0)}",
                )
        elif len(self.x0) != 2:
            raise FieldError(
                ("x0",), f"x0 has {len(self.x0)} values, but objective {objective.type!r} is 2-D"
            )
        return self

    @property
    def total_steps(self) -> int:
        return self.steps

    @property
    def epochs(self) -> int:
        return 0


def _task(value: Any) -> str:
    if isinstance(value, dict):
        task = value.get("task", "fit")
        return task if isinstance(task, str) else "fit"
    return str(getattr(value, "task", "fit"))


#: a job spec: `fit` (the default) or `minimize`
JobSpec = Annotated[
    Annotated[FitSpec, Tag("fit")] | Annotated[MinimizeSpec, Tag("minimize")],
    Discriminator(
        _task,
        custom_error_type="invalid_task",
        custom_error_message=("task must be 'fit' or 'minimize'"),
    ),
]
job_spec_adapter: TypeAdapter[FitSpec | MinimizeSpec] = TypeAdapter(JobSpec)
