"""A sweep's request, and its grid made into one job spec per point (API.md section 6).

A grid maps dotted paths into the spec (`optimizer`, `optimizer.lr`, `batch_size`) to lists of
values; its points are the cartesian product, the last path varying fastest. A point's spec is
the base as it was sent with the point's values set, whole objects before their fields (so
`optimizer` and `optimizer.lr` combine), resolved as `POST /jobs` resolves a spec.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from service.errors import InvalidSweep
from service.spec.base import INT64_MAX, INT64_MIN, TEXT_PATTERN
from service.spec.data import DatasetFacts
from service.spec.job import FitSpec, JobSpec, MinimizeSpec, job_spec_adapter
from service.spec.limits import Limits
from service.spec.resolve import dataset_of, resolve

Grid = Mapping[str, Sequence[Any]]
Overrides = dict[str, Any]
#: the facts of the dataset an id names, by id; empty where the caller cannot see one
DatasetLookup = Callable[[str | None], Mapping[str, DatasetFacts]]


#: a grid's key: field names joined by dots, from the spec's top level (`optimizer.lr`)
PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


def _storable(values: list[Any]) -> list[Any]:
    """Values the database's JSON holds as they were sent: finite numbers, integers of 64
    bits, UTF-8 text. (A value the spec takes is all of these; a shadowed one need not be.)"""
    stack: list[Any] = [values]
    while stack:  # a loop, not recursion: the nesting is as deep as the body's
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError("values must be finite numbers, not NaN or infinity")
        elif isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{value} is past the 64-bit integers a value may be")
        elif isinstance(value, str) and not _utf8(value):
            raise ValueError("text must not hold lone surrogates")
    return values


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


GridPath = Annotated[str, StringConstraints(pattern=PATH_PATTERN, max_length=200)]
GridValues = Annotated[list[Any], Field(min_length=1), AfterValidator(_storable)]

_EXAMPLE: dict[str, Any] = {
    "name": "x^2 from 10: four optimizers",
    "base": {
        "task": "minimize",
        "objective": {"type": "quadratic"},
        "x0": [10.0],
        "optimizer": {"type": "sgd", "lr": 0.1},
        "steps": 20,
    },
    "grid": {
        "optimizer": [
            {"type": "sgd", "lr": 0.1},
            {"type": "momentum", "lr": 0.1, "beta": 0.9},
            {"type": "rmsprop", "lr": 0.1, "alpha": 0.9},
            {"type": "adam", "lr": 0.1},
        ],
        "seed": [0, 1],
    },
}


class SweepRequest(BaseModel):
    """`POST /sweeps`: one job per point of the grid's cartesian product.

    Each grid key is a dotted path into the spec: a whole object (`optimizer`) or a field of
    one (`optimizer.lr`). A point's spec is the base as sent with the point's values set,
    whole objects before their fields, then validated as `POST /jobs` validates a spec.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN)
    base: JobSpec
    #: `{dotted path: [values]}`; the last path varies fastest. `{}` makes one job, the base
    grid: dict[GridPath, GridValues]
    _sent_base: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_base_as_sent(
        cls, data: Any, handler: ModelWrapValidatorHandler[SweepRequest]
    ) -> SweepRequest:
        # the points are made from the base as sent, not with its defaults filled in: a loss
        # resolved for the base's data need not fit a point's other data
        request = handler(data)
        sent = data.get("base") if isinstance(data, dict) else None
        if not isinstance(sent, dict):
            sent = request.base.model_dump(mode="json", exclude_unset=True)
        try:
            _storable([sent])
        except ValueError as exc:
            raise ValueError(f"base: {exc}") from None
        request._sent_base = copy.deepcopy(sent)
        return request

    @property
    def sent_base(self) -> dict[str, Any]:
        """The base spec as the request gave it."""
        return self._sent_base


class _Unsettable(ValueError):
    """A path that leads through something other than an object at one grid point."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path

    def error(self) -> dict[str, Any]:
        return {"type": "invalid_path", "loc": ("body", "grid", self.path), "msg": str(self)}


# --- the grid -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its grid values and its spec, resolved."""

    overrides: Overrides
    spec: FitSpec | MinimizeSpec


def expand(
    request: SweepRequest, *, limits: Limits, max_jobs: int, datasets: DatasetLookup
) -> list[Point]:
    """Every point, in grid order, each spec checked in full.

    Raises InvalidSweep naming each unknown path, the limit, or each invalid point and field.
    """
    _check_paths(request.grid, type(request.base))
    _check_size(request.grid, max_jobs)
    filled = request.base.model_dump(mode="json")
    made: list[Point] = []
    errors: list[dict[str, Any]] = []
    for overrides in points(request.grid):
        try:
            spec = job_spec_adapter.validate_python(apply(request.sent_base, filled, overrides))
            spec = resolve(spec, limits=limits, datasets=datasets(dataset_of(spec)))
        except _Unsettable as exc:
            errors.append(_naming(overrides, exc.error()))
            continue
        except ValidationError as exc:
            errors.extend(_located(exc, overrides))
            continue
        made.append(Point(overrides, spec))
    if errors:
        raise InvalidSweep(errors)
    return made


def points(grid: Grid) -> list[Overrides]:
    """The grid's cartesian product as `{path: value}` per point; the last path varies fastest."""
    paths = list(grid)
    return [dict(zip(paths, values, strict=True)) for values in itertools.product(*grid.values())]


def _check_paths(grid: Grid, root: type[BaseModel]) -> None:
    errors = [
        {"type": "invalid_path", "loc": ("body", "grid", path), "msg": why, "input": path}
        for path in grid
        if (why := unknown_path(path, root)) is not None
    ]
    if errors:
        raise InvalidSweep(errors)


def unknown_path(path: str, root: type[BaseModel]) -> str | None:
    """Why `path` names no field of a spec of type `root`; None when it names one."""
    models = {root}
    parts = path.split(".")
    for depth, part in enumerate(parts):
        where = repr(".".join(parts[:depth])) if depth else "the job spec"
        if not models:
            return f"{path!r} leads into {where}, which is not an object with fields"
        fields = {name for model in models for name in model.model_fields}
        if part not in fields:
            return f"no field {part!r} in {where}; its fields are {', '.join(sorted(fields))}"
        models = {
            inner
            for model in models
            if part in model.model_fields
            for inner in _models(model.model_fields[part].annotation)
        }
    return None


def _models(annotation: Any) -> set[type[BaseModel]]:
    """The pydantic models a field's type holds: itself, or the members of a union."""
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return {annotation} if issubclass(annotation, BaseModel) else set()
    return {model for arg in typing.get_args(annotation) for model in _models(arg)}


def _check_size(grid: Grid, max_jobs: int) -> None:
    size = math.prod(len(values) for values in grid.values())
    if size > max_jobs:
        shape = " x ".join(str(len(values)) for values in grid.values())
        raise InvalidSweep(
            [
                {
                    "type": "too_many_points",
                    "loc": ("body", "grid"),
                    "msg": f"the grid has {size} points ({shape}); the limit is {max_jobs} jobs"
                    " a sweep (DESCENT_MAX_SWEEP_JOBS)",
                    "ctx": {"points": size, "limit": max_jobs},
                }
            ]
        )


def apply(sent: dict[str, Any], filled: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """The base as sent with a point's values set, whole objects before their fields.

    An object a path leads through that the base leaves out is the base's with its defaults
    (`filled`), so `optimizer.lr` works on a base that does not name its optimizer.
    """
    spec = copy.deepcopy(sent)
    for path in sorted(overrides, key=lambda p: p.count(".")):
        _set(spec, filled, path, overrides[path])
    return spec


def _set(spec: dict[str, Any], filled: Any, path: str, value: Any) -> None:
    here: Any = spec
    defaults = filled
    *parents, leaf = path.split(".")
    for depth, part in enumerate(parents):
        defaults = defaults.get(part) if isinstance(defaults, dict) else None
        if part not in here and isinstance(defaults, dict):
            here[part] = copy.deepcopy(defaults)
        here = here.get(part)
        if not isinstance(here, dict):
            where = ".".join(parents[: depth + 1])
            raise _Unsettable(
                path,
                f"cannot set {path!r}: {where!r} is {json.dumps(here)} here, not an object;"
                f" give {where!r} whole in the grid instead",
            )
    here[leaf] = copy.deepcopy(value)


def _located(exc: ValidationError, overrides: Overrides) -> list[dict[str, Any]]:
    """A point's validation errors, located under `grid` (then as `POST /jobs` locates them).

    An `input` that is an object or a list is left out: often the point's whole spec, which
    the answer would otherwise repeat for every invalid point.
    """
    errors = []
    for e in exc.errors(include_url=False):
        error = {**e, "loc": ("body", "grid", *e["loc"])}
        if isinstance(e["input"], dict | list):
            del error["input"]
        errors.append(_naming(overrides, error))
    return errors


def _naming(overrides: Overrides, error: dict[str, Any]) -> dict[str, Any]:
    """The error with its grid point in its message and, as `overrides`, in its context."""
    return {
        **error,
        "msg": f"grid point {json.dumps(overrides)}: {error['msg']}",
        "ctx": {**(error.get("ctx") or {}), "overrides": overrides},
    }
