"""Which loss fits which model and data (API.md 3.2), and the penalty on the weights."""

from __future__ import annotations

from typing import Any

from service.spec.base import FieldError, LossName, NonNegative, SpecModel
from service.spec.data import DatasetData, InlineData, LinearData, label_kind, n_classes


class Penalty(SpecModel):
    """`l1*sum|W| + l2*sum(W^2)` over the weights; biases are not penalised."""

    l1: NonNegative = 0.0
    l2: NonNegative = 0.0


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
    """bce needs labels 0/1; cross_entropy needs labels 0..k-1, all integers."""
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
    if loss == "bce" and classes > 2:
        raise FieldError(
            ("loss",),
            f"loss 'bce' is binary, but the data has {classes} classes: use cross_entropy "
            "(model softmax or mlp)",
        )
