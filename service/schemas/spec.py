"""The job spec (API.md section 3): discriminated unions on `type`, every default filled in.

A spec that validates here is one a worker can train: cross-field rules (a loss that fits the
model and the data, the step limit, class labels) are checked at submission, so a bad spec is
a 422 that names the field and nothing is stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from service import costs
from service.config import get_settings

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

    @model_validator(mode="after")
    def _within_limits(self) -> MLPModel:
        settings = get_settings()
        if len(self.hidden) > settings.max_hidden_layers:
            raise FieldError(
                ("hidden",),
                f"model.hidden has {len(self.hidden)} layers; the limit is "
                f"{settings.max_hidden_layers} (DESCENT_MAX_HIDDEN_LAYERS)",
            )
        widest = max(self.hidden, default=0)
        if widest > settings.max_hidden_units:
            raise FieldError(
                ("hidden",),
                f"model.hidden has a layer of {widest} units; the limit is "
                f"{settings.max_hidden_units} (DESCENT_MAX_HIDDEN_UNITS)",
            )
        return self


ModelSpec = Annotated[
    LinearModel | LogisticModel | SoftmaxModel | MLPModel, Field(discriminator="type")
]

# --- data (3.3) ---------------------------------------------------------------------------


class LinearData(SpecModel):
    """`y = x w + b + noise`, x uniform on `x_range`."""

    model_config = _example({"type": "linear", "n_samples": 100, "weights": [2.0], "noise": 0.5})

    type: Literal["linear"] = "linear"
    n_samples: int = Field(100, ge=1, le=INT64_MAX)
    n_features: int = Field(1, ge=1, le=10_000)
    #: the true weights; random (normal, from the seed) if omitted
    weights: list[Value] | None = None
    bias: Value = 0.0
    noise: Annotated[float, Field(ge=0, le=MAX_VALUE)] = 0.1
    noise_type: Literal["normal", "uniform"] = "normal"
    # strict=False: a JSON array makes the pair (its items stay strict)
    x_range: tuple[Value, Value] = Field((0.0, 10.0), strict=False)

    @model_validator(mode="after")
    def _consistent(self) -> LinearData:
        if self.weights is not None and len(self.weights) != self.n_features:
            raise FieldError(
                ("weights",),
                f"data.weights has {len(self.weights)} values but data.n_features is "
                f"{self.n_features}",
            )
        if not self.x_range[0] < self.x_range[1]:
            raise FieldError(
                ("x_range",),
                f"data.x_range must be [low, high] with low < high, not {self.x_range}",
            )
        return self


#: the noise each kind of synthetic classification data gets when none is given
DEFAULT_CLASS_NOISE = {"blobs": 1.0, "moons": 0.1, "circles": 0.05, "xor": 0.1}


class ClassificationData(SpecModel):
    """Synthetic classes: blobs (any dimension and class count), moons, circles, xor (2-D)."""

    model_config = _example(
        {"type": "classification", "kind": "moons", "n_samples": 500, "noise": 0.2}
    )

    type: Literal["classification"] = "classification"
    kind: Literal["blobs", "moons", "circles", "xor"] = "blobs"
    n_samples: int = Field(200, ge=2, le=INT64_MAX)
    #: blobs only; the other kinds are 2-D
    n_features: int = Field(2, ge=1, le=10_000)
    #: blobs only; the other kinds have 2 classes
    n_classes: int = Field(2, ge=2, le=INT64_MAX)
    #: blobs: the clusters' standard deviation; others: gaussian noise added to the points
    noise: Annotated[float, Field(ge=0, le=MAX_VALUE)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ClassificationData:
        if self.kind != "blobs" and (self.n_features != 2 or self.n_classes != 2):
            raise FieldError(
                ("kind",),
                f"data.kind {self.kind!r} is 2-D with 2 classes; n_features and n_classes "
                "apply to blobs only",
            )
        if self.noise is None:
            self.noise = DEFAULT_CLASS_NOISE[self.kind]
        return self


class DigitsData(SpecModel):
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), pixels in [0, 1]."""

    model_config = _example({"type": "digits"})

    type: Literal["digits"] = "digits"


def _bounded(value: float) -> float:
    if not -MAX_VALUE <= value <= MAX_VALUE:
        raise ValueError(
            f"{value:g} is too large: data values lie within -1e12 .. 1e12, so their squares "
            "stay far inside float32"
        )
    return value


#: a number of inline data: a JSON integer (a class label, where the loss takes labels) or a
#: float, within the bound
InlineNumber = Annotated[StrictFloat | Int64, AfterValidator(_bounded)]


class InlineData(SpecModel):
    """Data in the request. Targets given as JSON integers are class labels; floats are values."""

    model_config = _example({"type": "inline", "x": [[0.0], [1.0], [2.0]], "y": [0.1, 2.1, 3.9]})

    type: Literal["inline"] = "inline"
    x: list[list[InlineNumber]] = Field(min_length=1)
    #: class labels (JSON integers) are bounded by DESCENT_MAX_CLASSES when the loss needs labels
    y: list[InlineNumber] = Field(min_length=1)

    @model_validator(mode="after")
    def _rectangular(self) -> InlineData:
        if len(self.x) != len(self.y):
            raise FieldError(
                ("y",), f"data.x has {len(self.x)} rows but data.y has {len(self.y)} targets"
            )
        width = len(self.x[0])
        if width == 0:
            raise FieldError(("x", 0), "data.x rows must have at least one feature")
        for i, row in enumerate(self.x):
            if len(row) != width:
                raise FieldError(
                    ("x", i), f"data.x is ragged: row {i} has {len(row)} values, row 0 has {width}"
                )
        return self

    @property
    def integer_targets(self) -> bool:
        return all(isinstance(v, int) for v in self.y)


@dataclass(frozen=True)
class DatasetFacts:
    """What a spec needs to know of an uploaded dataset to be checked."""

    n_samples: int
    n_features: int
    integer_target: bool
    target_min: float
    target_max: float


class DatasetData(SpecModel):
    """An uploaded dataset (`POST /datasets`)."""

    model_config = _example({"type": "dataset", "id": "3f2a9c0d1e4b5a6c"})

    type: Literal["dataset"] = "dataset"
    id: str = Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)
    #: `auto`: class labels when every target is an integer, else values; or force either
    targets: Literal["auto", "labels", "values"] = "auto"
    _facts: DatasetFacts | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _known(self, info: ValidationInfo) -> DatasetData:
        # the API and the worker validate a second time with the stored datasets in the
        # context; the first pass (FastAPI's) cannot see the database
        known = (info.context or {}).get("datasets")
        if known is not None:
            if self.id not in known:
                raise FieldError(("id",), f"data.id: there is no dataset {self.id!r}")
            self._facts = known[self.id]
        return self

    @property
    def facts(self) -> DatasetFacts | None:
        return self._facts


AnyData = LinearData | ClassificationData | DigitsData | InlineData | DatasetData
DataSpec = Annotated[AnyData, Field(discriminator="type")]

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

# --- schedules (3.5), stepped once per epoch -------------------------------------------------


class StepSchedule(SpecModel):
    """torch.optim.lr_scheduler.StepLR."""

    model_config = _example({"type": "step", "step_size": 10, "gamma": 0.5})

    type: Literal["step"] = "step"
    step_size: int = Field(ge=1, le=INT64_MAX)
    gamma: Positive = 0.1


class ExponentialSchedule(SpecModel):
    """torch.optim.lr_scheduler.ExponentialLR."""

    model_config = _example({"type": "exponential", "gamma": 0.95})

    type: Literal["exponential"] = "exponential"
    gamma: Positive


class CosineSchedule(SpecModel):
    """torch.optim.lr_scheduler.CosineAnnealingLR; `t_max` defaults to the job's epochs."""

    model_config = _example({"type": "cosine", "eta_min": 0.0001})

    type: Literal["cosine"] = "cosine"
    t_max: int | None = Field(None, ge=1, le=INT64_MAX)
    eta_min: NonNegative = 0.0


ScheduleSpec = Annotated[
    StepSchedule | ExponentialSchedule | CosineSchedule, Field(discriminator="type")
]


class Penalty(SpecModel):
    """`l1*sum|W| + l2*sum(W^2)` over the weights; biases are not penalised."""

    l1: NonNegative = 0.0
    l2: NonNegative = 0.0


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


class FitSpec(SpecModel):
    """Train a model on data (`task: fit`)."""

    model_config = _example(_EXAMPLE)

    name: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN)
    task: Literal["fit"] = "fit"
    seed: int = Field(0, ge=0, le=2**32 - 1)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
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
        settings = get_settings()
        if self.n_samples > settings.max_rows:
            raise FieldError(
                ("data",),
                f"data has {self.n_samples} rows; the limit is {settings.max_rows} "
                "(DESCENT_MAX_ROWS)",
            )
        if self.total_steps > settings.max_steps:
            raise FieldError(
                ("epochs",),
                f"epochs x batches per epoch is {self.total_steps} optimizer steps; the limit is "
                f"{settings.max_steps} (DESCENT_MAX_STEPS)",
            )
        if isinstance(self.schedule, CosineSchedule) and self.schedule.t_max is None:
            self.schedule.t_max = self.epochs
        costs.check(costs.fit_cost(self), settings)
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

_MINIMIZE_EXAMPLE: dict[str, Any] = {
    "task": "minimize",
    "objective": {"type": "quadratic"},
    "x0": [10.0],
    "optimizer": {"type": "momentum", "lr": 0.1, "beta": 0.9},
    "steps": 20,
}


class MinimizeSpec(SpecModel):
    """Follow an optimizer over a test function (`task: minimize`), in float64."""

    model_config = _example(_MINIMIZE_EXAMPLE)

    name: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN)
    task: Literal["minimize"] = "minimize"
    seed: int = Field(0, ge=0, le=2**32 - 1)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
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
        settings = get_settings()
        if self.steps > settings.max_steps:
            raise FieldError(
                ("steps",),
                f"steps is {self.steps}; the limit is {settings.max_steps} (DESCENT_MAX_STEPS)",
            )
        # the path keeps x at every step: steps x dimensions values to store
        path_values = (self.steps + 1) * len(self.x0)
        if path_values > settings.max_values:
            raise FieldError(
                ("steps",),
                f"the trajectory would hold (steps + 1) x len(x0) = {path_values} values; the "
                f"limit is {settings.max_values} (DESCENT_MAX_VALUES): take fewer steps or "
                "fewer dimensions",
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


def data_rows(data: AnyData) -> int:
    """How many rows a data spec produces."""
    if isinstance(data, DigitsData):
        return DIGITS_SAMPLES
    if isinstance(data, InlineData):
        return len(data.x)
    if isinstance(data, DatasetData):
        return data.facts.n_samples if data.facts is not None else 0
    return data.n_samples


# --- which loss fits which model and data (3.2) ----------------------------------------------


def label_kind(data: AnyData) -> str:
    """`labels` (integer classes), `values` (real targets) for what the data's targets are."""
    if isinstance(data, ClassificationData | DigitsData):
        return "labels"
    if isinstance(data, DatasetData):
        if data.targets != "auto":
            return data.targets
        return "labels" if data.facts is not None and data.facts.integer_target else "values"
    if isinstance(data, InlineData) and data.integer_targets:
        return "labels"
    return "values"


def resolve_loss(model: str, loss: LossName | None, data: Any) -> LossName:
    """The loss a job trains with, or FieldError saying why the pair does not fit."""
    kind = label_kind(data)
    fitting: dict[str, tuple[LossName, ...]] = {
        "linear": ("mse",),
        "logistic": ("bce",),
        "softmax": ("cross_entropy",),
    }
    if model == "mlp":
        chosen: LossName = loss or ("cross_entropy" if kind == "labels" else "mse")
    else:
        chosen = loss or fitting[model][0]
        if chosen not in fitting[model]:
            raise FieldError(
                ("loss",),
                f"loss {chosen!r} does not fit model {model!r}, which trains with "
                f"{fitting[model][0]!r}",
            )
    if chosen == "mse":
        if kind == "labels" and not isinstance(data, InlineData | DatasetData):
            raise FieldError(
                ("loss",),
                f"loss 'mse' needs real-valued targets, but data {data.type!r} gives class "
                "labels: use cross_entropy (or model softmax/logistic)",
            )
        return chosen
    _check_labels(chosen, data)
    return chosen


def _check_labels(loss: str, data: Any) -> None:
    """bce needs labels 0/1; cross_entropy needs labels 0..k-1, all integers, k bounded."""
    where = ("data", data.type)
    if isinstance(data, LinearData):
        raise FieldError(
            ("loss",),
            f"loss {loss!r} needs class labels, but data 'linear' gives real-valued targets",
        )
    if isinstance(data, DatasetData):
        facts = data.facts
        assert facts is not None  # checked only once the dataset is known
        if not facts.integer_target or facts.target_min < 0:
            raise FieldError(
                (*where, "id"),
                f"loss {loss!r} needs class labels, integers from 0, but dataset {data.id}'s "
                f"targets run from {facts.target_min:g} to {facts.target_max:g}"
                + ("" if facts.integer_target else " and are not all integers"),
            )
    elif isinstance(data, InlineData):
        for i, v in enumerate(data.y):
            if not float(v).is_integer() or v < 0:
                raise FieldError(
                    (*where, "y", i),
                    f"data.y[{i}] is {v}: loss {loss!r} needs class labels, integers from 0",
                )
    classes = n_classes(data)
    limit = get_settings().max_classes
    if classes > limit:
        field = {"inline": "y", "dataset": "id", "classification": "n_classes"}[data.type]
        raise FieldError(
            (*where, field),
            f"the class labels run to {classes - 1}, so the model would have {classes} "
            f"outputs; the limit is {limit} classes (DESCENT_MAX_CLASSES): labels must be "
            f"integers from 0 to {limit - 1}",
        )
    if loss == "bce" and classes > 2:
        raise FieldError(
            ("loss",),
            f"loss 'bce' is binary, but the data has {classes} classes: use cross_entropy "
            "(model softmax or mlp)",
        )


def n_classes(data: AnyData) -> int:
    """Classes of data whose targets are labels 0..k-1: k, at least 2 (as the worker builds)."""
    if isinstance(data, DigitsData):
        return DIGITS_CLASSES
    if isinstance(data, ClassificationData):
        return data.n_classes
    if isinstance(data, DatasetData):
        top = data.facts.target_max if data.facts is not None else 1
        return max(int(top) + 1, 2)
    if isinstance(data, InlineData):
        return max(int(max(data.y)) + 1, 2)
    return 2


def data_features(data: AnyData) -> int:
    """Features a row of the data has."""
    if isinstance(data, DigitsData):
        return DIGITS_FEATURES
    if isinstance(data, InlineData):
        return len(data.x[0])
    if isinstance(data, DatasetData):
        return data.facts.n_features if data.facts is not None else 0
    if isinstance(data, ClassificationData) and data.kind != "blobs":
        return 2
    return data.n_features
