"""The data sources of API.md 3.3, made reproducibly from the job's seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import datasets

from service.spec import (
    AnyData,
    ClassificationData,
    DigitsData,
    FitSpec,
    InlineData,
    LinearData,
    label_kind,
)


@dataclass(frozen=True)
class Dataset:
    """Features as float64 rows; targets as int64 labels or float64 columns."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    #: number of classes for labels, else None
    n_classes: int | None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def n_outputs(self, loss: str | None) -> int:
        """The model's outputs for `loss`: a logit per class, one logit, or each target column."""
        if loss == "cross_entropy":
            return self.n_classes or 2
        if loss == "bce":
            return 1
        return int(self.y_train.shape[1])


def load(spec: FitSpec, *, arrays: tuple[np.ndarray, np.ndarray] | None = None) -> Dataset:
    """Make the spec's data (or take the uploaded `arrays`), then hold out `validation_split`
    after a seeded shuffle."""
    x, y = arrays if arrays is not None else make(spec.data, seed=spec.seed)
    labels = spec.loss in ("bce", "cross_entropy")
    if labels:
        y = y.astype(np.int64)
        n_classes: int | None = max(int(y.max()) + 1, 2)
    else:
        y = y.astype(np.float64).reshape(len(y), -1)
        n_classes = None
    order = np.random.default_rng([spec.seed, 1]).permutation(len(x))
    val, train = order[: spec.n_val], order[spec.n_val :]
    return Dataset(x[train], y[train], x[val], y[val], n_classes)


def make(data: AnyData, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (float64) and targets for one data spec."""
    if isinstance(data, LinearData):
        return _linear(data, np.random.default_rng(seed))
    if isinstance(data, ClassificationData):
        return _classification(data, seed)
    if isinstance(data, DigitsData):
        digits = datasets.load_digits()
        return digits.data.astype(np.float64) / 16.0, digits.target
    if not isinstance(data, InlineData):
        raise TypeError(f"data {data.type!r} is stored, not made: pass its arrays to load()")
    x = np.asarray(data.x, dtype=np.float64)
    y = np.asarray(data.y, dtype=np.int64 if label_kind(data) == "labels" else np.float64)
    return x, y


def _linear(data: LinearData, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    low, high = data.x_range
    x = rng.uniform(low, high, size=(data.n_samples, data.n_features))
    w = np.asarray(data.weights) if data.weights is not None else rng.normal(size=data.n_features)
    if data.noise_type == "normal":
        noise = rng.normal(0.0, data.noise, size=data.n_samples)
    else:
        noise = rng.uniform(-data.noise, data.noise, size=data.n_samples)
    return x, x @ w + data.bias + noise


def _classification(data: ClassificationData, seed: int) -> tuple[np.ndarray, np.ndarray]:
    noise = float(data.noise or 0.0)
    n = data.n_samples
    if data.kind == "blobs":
        x, y = datasets.make_blobs(
            n_samples=n,
            n_features=data.n_features,
            centers=data.n_classes,
            cluster_std=noise,
            random_state=seed,
        )
    elif data.kind == "moons":
        x, y = datasets.make_moons(n_samples=n, noise=noise, random_state=seed)
    elif data.kind == "circles":
        x, y = datasets.make_circles(n_samples=n, noise=noise, factor=0.5, random_state=seed)
    else:  # xor: the sign of x0 * x1, with gaussian noise on the points
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1.0, 1.0, size=(n, 2))
        y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
        x = x + rng.normal(0.0, noise, size=x.shape)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)
