"""A sweep's group's data: each run's training and validation rows, the features stored once.

Each run of a group (group.py) has the split and batch order `data.load` gives its seed; the
features of one data set are on the device once, and each run holds row numbers into them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from service.spec import ClassificationData, FitSpec, LinearData
from worker.training import data as data_sources

#: above this many bytes, a group's shuffled training set is not gathered once an epoch but
#: one batch at a time (bytes)
EPOCH_GATHER_BYTES = 256 * 2**20


def _seeded(spec: FitSpec) -> bool:
    """Whether the data themselves (not only their split) are made from the job's seed."""
    return isinstance(spec.data, LinearData | ClassificationData)


def _each_runs_split(
    specs: Sequence[FitSpec], arrays: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, list[data_sources.Dataset]]:
    """The group's features, each distinct data set once, and each run's split of them as
    `data.load` makes it for the run's seed, its features being row numbers into those."""
    # data set (the seed, if the data are made from it) -> its first row, its targets
    bases: dict[int | None, tuple[int, np.ndarray]] = {}
    features: list[np.ndarray] = []
    splits = []
    for spec in specs:
        key = spec.seed if _seeded(spec) else None
        if key not in bases:
            x, y = arrays or data_sources.make(spec.data, seed=spec.seed)
            bases[key] = (sum(len(f) for f in features), y)
            features.append(np.asarray(x, dtype=np.float64))
        start, y = bases[key]
        # load() only selects rows: given row numbers as the features, it hands back the
        # numbers of the rows it selects, in its order (the targets it converts itself)
        numbers = np.arange(start, start + len(y), dtype=np.float64)[:, None]
        splits.append(data_sources.load(spec, arrays=(numbers, y)))
    widths = {f.shape[1] for f in features}
    if len(widths) != 1:
        raise ValueError(f"the runs' data differ in their number of features: {widths}")
    return np.concatenate(features), splits


class GroupData:
    """Each run's training and validation rows, made as `data.load` makes them for its seed.

    The features are stored once per distinct data set (once for the group, unless they are
    made from the seed) in `x`; each run has its own row numbers into it, in its split's order.
    """

    def __init__(
        self,
        specs: Sequence[FitSpec],
        device: torch.device,
        dtype: torch.dtype,
        arrays: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        x, splits = _each_runs_split(specs, arrays)
        shapes = {
            (split.n_outputs(spec.loss), len(split.x_train), len(split.x_val))
            for spec, split in zip(specs, splits, strict=True)
        }
        if len(shapes) != 1:
            raise ValueError(
                f"the runs' data differ in (outputs, training, validation rows): {shapes}"
            )
        self.n_out, self.n_train, self.n_val = shapes.pop()
        self.n_features = x.shape[1]
        self.device = device
        self.x = torch.as_tensor(x, dtype=dtype, device=device)
        y_dtype = torch.long if specs[0].loss == "cross_entropy" else dtype
        self.rows = {
            "train": _stack([split.x_train[:, 0] for split in splits], torch.long, device),
            "val": _stack([split.x_val[:, 0] for split in splits], torch.long, device),
        }
        self.y = {
            "train": _stack([split.y_train for split in splits], y_dtype, device),
            "val": _stack([split.y_val for split in splits], y_dtype, device),
        }
        # each run's training rows in its split's order (the full batch, the evaluation set),
        # gathered once if they fit; else taken from `x` a batch at a time
        size = len(specs) * self.n_train * self.n_features * self.x.element_size()
        self.x_train = self.x[self.rows["train"]] if size <= EPOCH_GATHER_BYTES else None

    def select(self, keep: Sequence[int]) -> None:
        rows = torch.as_tensor(keep, dtype=torch.long, device=self.device)
        self.rows = {part: value[rows] for part, value in self.rows.items()}
        self.y = {part: value[rows] for part, value in self.y.items()}
        if self.x_train is not None:
            self.x_train = self.x_train[rows]

    def features_of(self, run: int, part: str, start: int, end: int) -> Tensor:
        """Rows `start:end` of one run's training or validation set: `[end-start, F]`."""
        if part == "train" and self.x_train is not None:
            return self.x_train[run, start:end]
        return self.x[self.rows[part][run, start:end]]

    def epoch(self, orders: Tensor | None) -> Epoch:
        """The batches of an epoch, each run's training rows taken in `orders` ([R, n])."""
        if orders is None:
            return Epoch(self, self.x_train, self.rows["train"], self.y["train"])
        runs = torch.arange(len(orders), device=self.device).unsqueeze(1)
        rows = self.rows["train"].gather(1, orders)
        y = self.y["train"][runs, orders]
        x = self.x_train[runs, orders] if self.x_train is not None else None
        return Epoch(self, x, rows, y)


class Epoch:
    """One epoch's training rows for the runs still training, in the order each run drew."""

    def __init__(self, data: GroupData, x: Tensor | None, rows: Tensor, y: Tensor) -> None:
        self.data, self.x, self.rows, self.y = data, x, rows, y

    def batch(self, start: int, end: int) -> tuple[Tensor, Tensor]:
        x = self.x[:, start:end] if self.x is not None else self.data.x[self.rows[:, start:end]]
        return x, self.y[:, start:end]

    def select(self, keep: Sequence[int]) -> None:
        rows = torch.as_tensor(keep, dtype=torch.long, device=self.rows.device)
        self.rows, self.y = self.rows[rows], self.y[rows]
        if self.x is not None:
            self.x = self.x[rows]


def _stack(arrays: list[np.ndarray], dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.as_tensor(np.stack(arrays), device=device).to(dtype)
