"""What a fit job costs a worker, estimated from its spec before anything is stored.

The estimate follows what the training loop allocates (worker/training/fit.py): the model,
its gradients and the optimizer's state stay for the whole run; the data is made in float64,
split, then copied into the job's dtype and gathered again each epoch to shuffle; a step holds
one batch's activations; a flush holds serialised copies of the model and optimizer state (the
checkpoint and the saved parameters). The peak is what stays plus the largest of what comes
and goes. It errs on the high side: a job it admits fits its worker's budget, and the worker
caps its own allocations there too (worker/memory.py), so an estimate that is wrong ends one
job as `resources`, not the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.spec.data import data_features, n_classes
from service.spec.job import FitSpec, MinimizeSpec

#: bytes of one number of each dtype
DTYPE_BYTES = {"float32": 4, "float64": 8}
#: tensors of the parameters' size each optimizer keeps per parameter (torch.optim's state)
_STATE_SLOTS = {"sgd": 0, "momentum": 1, "adagrad": 1, "rmsprop": 1, "adam": 2, "adamw": 2}
#: parameter-sized temporaries of one optimizer step (torch's foreach kernels)
STEP_TEMPORARIES = 2
#: bytes a number of an `inline` spec costs as Python objects: a float and its list slot, in
#: the parsed JSON and in the validated spec
INLINE_BYTES = 64
#: rows evaluated at once for the per-epoch metrics over a whole set
EVAL_ROWS = 65_536
#: numbers one layer's output may hold in an evaluation slice: a wide model takes fewer rows
EVAL_NUMBERS = 1 << 22
GIB = 1 << 30
#: models with at most this many scalar parameters keep a trajectory (API.md section 4)
TRAJECTORY_MAX_PARAMETERS = 1000


@dataclass(frozen=True)
class Cost:
    """A fit job's size: its parameters, classes and data, and its worker's peak memory."""

    parameters: int
    #: outputs of a classifier; None for regression
    classes: int | None
    #: rows times features of the data
    values: int
    #: bytes the parameters, their gradients and the optimizer's state hold all run long
    model_bytes: int
    #: bytes the data holds (made, split, converted and shuffled)
    data_bytes: int
    #: bytes one batch's activations take in a step, or one slice's in an evaluation
    batch_bytes: int
    #: bytes of parameter-sized copies that come and go: a step's temporaries, or a flush's
    #: serialised checkpoint and parameters
    transient_bytes: int

    @property
    def step_bytes(self) -> int:
        """The largest passing allocation: a step, an evaluation or a flush."""
        return self.batch_bytes + self.transient_bytes

    @property
    def peak_bytes(self) -> int:
        return self.model_bytes + self.data_bytes + self.step_bytes

    def describe(self) -> str:
        """The peak and its parts, for a person."""
        return (
            f"{gib(self.peak_bytes)} (the model, its gradients and optimizer state "
            f"{gib(self.model_bytes)}, the data {gib(self.data_bytes)}, one batch's "
            f"activations {gib(self.batch_bytes)}, copies of the parameters in a step or a "
            f"checkpoint {gib(self.transient_bytes)})"
        )


def fit_cost(spec: FitSpec) -> Cost:
    """The cost of training `spec` (a FitSpec whose loss is resolved)."""

    width = DTYPE_BYTES[spec.dtype]
    features = data_features(spec.data)
    classes = n_classes(spec.data) if spec.loss == "cross_entropy" else None
    outputs = classes if classes is not None else 1
    widths = [features, *getattr(spec.model, "hidden", []), outputs]
    parameters = layer_parameters(widths, bias=spec.model.bias)
    slots = optimizer_slots(spec)
    values = spec.n_samples * features
    batch = spec.n_train if spec.batch_size is None else min(spec.batch_size, spec.n_train)
    inner = widths[1:]
    # forward keeps each layer's output and its activation; backward makes as many again
    activations = 3 * batch * sum(inner) * width
    # an evaluation slice: the widest layer's output and the next, the logits and their
    # log-softmax
    rows = min(spec.n_samples, eval_rows(max(inner)))
    evaluation = rows * (2 * max(inner) + 2 * outputs) * width
    # a checkpoint (model and state) and the saved parameters, each once serialised and once
    # in the database driver's hands
    flush = 2 * (2 + slots) * parameters * width
    return Cost(
        parameters=parameters,
        classes=classes,
        values=values,
        model_bytes=(2 + slots) * parameters * width,
        data_bytes=_data_bytes(spec, values, width),
        batch_bytes=max(activations, evaluation),
        transient_bytes=max(STEP_TEMPORARIES * parameters * width, flush),
    )


def no_trajectory(parameters: int, epochs: int, max_values: int | None) -> str | None:
    """Why a fit run of `parameters` over `epochs` keeps no per-epoch trajectory, or None
    where it keeps one (API.md section 4; `max_values` is DESCENT_MAX_VALUES)."""
    if parameters > TRAJECTORY_MAX_PARAMETERS:
        return (
            f"no trajectory: the model has {parameters} parameters, and a fit job keeps its "
            "parameters after every epoch only for models of at most "
            f"{TRAJECTORY_MAX_PARAMETERS}; GET /jobs/{{id}}/parameters has the latest ones"
        )
    values = parameters * (epochs + 1)
    if max_values is not None and values > max_values:
        return (
            f"no trajectory: {parameters} parameters after each of {epochs} epochs make "
            f"{values} values; the limit is {max_values} (DESCENT_MAX_VALUES)"
        )
    return None


def why_no_trajectory(spec: FitSpec | MinimizeSpec, max_values: int | None) -> str | None:
    """Why a resolved job keeps no trajectory, or None where it keeps one (minimize jobs,
    small models over not too many epochs)."""
    if not isinstance(spec, FitSpec) or spec.loss is None:
        return None
    return no_trajectory(fit_cost(spec).parameters, spec.epochs, max_values)


def eval_rows(widest: int) -> int:
    """Rows evaluated at once for a model whose widest layer has `widest` units."""
    return max(1, min(EVAL_ROWS, EVAL_NUMBERS // max(widest, 1)))


def layer_parameters(widths: list[int], *, bias: bool) -> int:
    """Scalars of a chain of linear layers between `widths`."""
    return sum(a * b + (b if bias else 0) for a, b in zip(widths, widths[1:], strict=False))


def optimizer_slots(spec: FitSpec) -> int:
    """Parameter-sized tensors the optimizer keeps (or the solver, in its own terms)."""
    optimizer = spec.optimizer
    kind = optimizer.type
    if kind == "sgd":
        return 1 if getattr(optimizer, "momentum", 0) > 0 else 0
    if kind == "rmsprop":
        return (
            1
            + int(getattr(optimizer, "momentum", 0) > 0)
            + int(getattr(optimizer, "centered", False))
        )
    if kind in ("adam", "adamw"):
        return 2 + int(getattr(optimizer, "amsgrad", False))
    if kind == "fista":
        return 2  # the previous iterate and the extrapolated point
    return _STATE_SLOTS.get(kind, 0)


def _data_bytes(spec: FitSpec, values: int, width: int) -> int:
    # made in float64, then split into train and validation copies; converted to the dtype
    # (a float64 tensor of a float64 array shares it, counted anyway); gathered again each
    # epoch to shuffle, while the last order is still held
    made = 2 * values * 8 + 2 * values * width
    made += 4 * spec.n_samples * 8  # the targets: made, split, converted, shuffled
    if spec.data.type == "inline":
        made += values * INLINE_BYTES
    if spec.data.type == "dataset":
        made += values * 8  # the stored arrays, decompressed
    if spec.optimizer.type in ("coordinate_descent", "admm"):
        features = values // max(spec.n_samples, 1)
        made += 3 * features * features * 8  # the solvers' Gram matrix and factor
    return made


def largest_part(cost: Cost) -> str:
    """The field to change to make the job smaller: what takes the most memory."""
    parts = {
        "model": cost.model_bytes + cost.transient_bytes,
        "data": cost.data_bytes,
        "batch_size": cost.batch_bytes,
    }
    return max(parts, key=parts.__getitem__)


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"
