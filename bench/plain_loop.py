"""The references: the same training as a Descent job, written as a user would in plain PyTorch.

Each loop does the same work per epoch as a job (a loss kept per step, then the objective,
and the accuracy for a classifier, over the training and validation sets), so a ratio against
it measures Descent's overhead, not a difference in work. Data making is timed too, as a
job's own timestamps count it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

Batches = Callable[[torch.Tensor, torch.Tensor, int], Iterator[tuple[torch.Tensor, ...]]]


def in_memory(x: torch.Tensor, y: torch.Tensor, size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """One shuffle per epoch, then slices: what Descent's loop does."""
    order = torch.randperm(len(x))
    x, y = x[order], y[order]
    for i in range(0, len(x), size):
        yield x[i : i + size], y[i : i + size]


def data_loader(x: torch.Tensor, y: torch.Tensor, size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The seeds' way: a DataLoader over a TensorDataset, shuffled."""
    yield from DataLoader(TensorDataset(x, y), batch_size=size, shuffle=True)


def train_digits(epochs: int, *, seed: int = 0, batch_size: int = 64) -> tuple[int, float]:
    """The digits MLP [128] with Adam: steps taken and seconds."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x))
    n_val = int(len(x) * 0.2)
    x_val, y_val, x, y = x[order[:n_val]], y[order[:n_val]], x[order[n_val:]], y[order[n_val:]]
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def evaluate() -> None:
        for xe, ye in ((x, y), (x_val, y_val)):
            out = model(xe)
            F.cross_entropy(out, ye).item()
            (out.argmax(1) == ye).float().mean().item()

    steps = _epochs(model, optimizer, F.cross_entropy, (x, y), epochs, batch_size, evaluate)
    return steps, time.perf_counter() - started


def train_linear(
    epochs: int, *, n_samples: int, n_features: int, seed: int = 0, batches: Batches = in_memory
) -> tuple[int, float]:
    """Linear regression by SGD with batch size 1: steps taken and seconds."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    x = torch.rand(n_samples, n_features) * 2 - 1
    y = x @ torch.randn(n_features, 1) + 0.1 * torch.randn(n_samples, 1)
    model = nn.Linear(n_features, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def evaluate() -> None:
        F.mse_loss(model(x), y).item()

    steps = _epochs(model, optimizer, F.mse_loss, (x, y), epochs, 1, evaluate, batches)
    return steps, time.perf_counter() - started


def _epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    batch_size: int,
    evaluate: Callable[[], None],
    batches: Batches = in_memory,
) -> int:
    """The loop itself; the number of steps it took."""
    losses = []
    for _ in range(epochs):
        for xb, yb in batches(*data, batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        with torch.no_grad():
            evaluate()
    torch.stack(losses).tolist()  # the curve, as numbers, once
    return len(losses)
