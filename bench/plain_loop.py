"""The digits MLP trained by a plain PyTorch loop, as a user would write it: the reference.

It does the same work per epoch as a Descent job (a loss per step, then the loss and the
accuracy over the training and validation sets), so the ratio measures Descent's overhead,
not a difference in work.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn


def train_digits(epochs: int, *, seed: int = 0, batch_size: int = 64) -> tuple[int, float]:
    """Steps taken and seconds, data loading included, as a job's own timestamps count."""
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
    losses, steps = [], 0
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        xs, ys = x[perm], y[perm]
        for i in range(0, len(x), batch_size):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xs[i : i + batch_size]), ys[i : i + batch_size])
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            steps += 1
        with torch.no_grad():
            for xe, ye in ((x, y), (x_val, y_val)):
                out = model(xe)
                F.cross_entropy(out, ye).item()
                (out.argmax(1) == ye).float().mean().item()
    torch.stack(losses).tolist()
    return steps, time.perf_counter() - started
