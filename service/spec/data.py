"""Data sources (API.md 3.3), and what a spec can tell of its data without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    StrictFloat,
    ValidationInfo,
    model_validator,
)

from service.spec.base import (
    DIGITS_CLASSES,
    DIGITS_FEATURES,
    DIGITS_SAMPLES,
    INT64_MAX,
    MAX_VALUE,
    TEXT_PATTERN,
    FieldError,
    Int64,
    SpecModel,
    Value,
    _example,
)

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


def data_rows(data: AnyData) -> int:
    """How many rows a data spec produces."""
    if isinstance(data, DigitsData):
        return DIGITS_SAMPLES
    if isinstance(data, InlineData):
        return len(data.x)
    if isinstance(data, DatasetData):
        return data.facts.n_samples if data.facts is not None else 0
    return data.n_samples


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
