"""Training overhead (the service against plain PyTorch) and the seeds' DataLoader batching."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import torch

from bench import plain_loop
from bench.report import Row
from bench.service import job_seconds, run_job, running_service

DIGITS_MLP: dict[str, Any] = {
    "model": {"type": "mlp", "hidden": [128], "activation": "relu"},
    "data": {"type": "digits"},
    "optimizer": {"type": "adam", "lr": 0.001},
    "batch_size": 64,
    "device": "cpu",
}
#: SGD with batch size 1 on 2000 rows: per-step overhead is all there is to see
LINEAR_SGD: dict[str, Any] = {
    "model": {"type": "linear"},
    "data": {"type": "linear", "n_samples": 2000, "n_features": 10, "x_range": [-1, 1]},
    "optimizer": {"type": "sgd", "lr": 0.01},
    "batch_size": 1,
    "validation_split": 0,
    "device": "cpu",
}

Rate = tuple[int, float]  # steps, seconds
Plain = Callable[[int, int], Rate]  # (epochs, seed) -> (steps, seconds)


def _digits(epochs: int, seed: int) -> Rate:
    return plain_loop.train_digits(epochs, seed=seed)


def _linear(epochs: int, seed: int, batches: plain_loop.Batches = plain_loop.in_memory) -> Rate:
    return plain_loop.train_linear(
        epochs, n_samples=2000, n_features=10, seed=seed, batches=batches
    )


def _linear_data_loader(epochs: int, seed: int) -> Rate:
    return _linear(epochs, seed, batches=plain_loop.data_loader)


def measure(
    client: httpx.Client, spec: dict[str, Any], plain: Plain, epochs: int, runs: int
) -> dict[str, float]:
    """Median steps per second of each, and the median of the runs' ratios.

    The two run in turn, and each ratio compares a job with the plain run just before it, so
    a change in the machine's load between runs moves both sides of a ratio together.
    """
    plain(1, 0)  # the worker warms torch up before its first job; so does the reference
    run_job(client, {**spec, "epochs": 1})
    plain_rates, service_rates = [], []
    for seed in range(runs):
        steps, seconds = plain(epochs, seed)
        plain_rates.append(steps / seconds)
        job = run_job(client, {**spec, "epochs": epochs, "seed": seed})
        service_rates.append(job["result"]["steps"] / job_seconds(job))
    ratios = [s / p for s, p in zip(service_rates, plain_rates, strict=True)]
    return {
        "service": statistics.median(service_rates),
        "plain": statistics.median(plain_rates),
        "ratio": statistics.median(ratios),
    }


def rows(quick: bool) -> Iterator[Row]:
    runs = 1 if quick else 5
    # an idle worker looks at the queue once a second, not 100 times, so that it takes no CPU
    # from the plain runs; a job's timestamps start at its claim, so this costs it nothing
    with running_service(workers=1, settings={"DESCENT_POLL_SECONDS": "1"}) as client:
        epochs = 5 if quick else 200
        d = measure(client, DIGITS_MLP, _digits, epochs, runs)
        yield Row(
            f"1a. training overhead: digits MLP [128], Adam, batch 64, {epochs} epochs",
            f"{d['service']:,.0f} steps/s (service, job timestamps)",
            f"{d['plain']:,.0f} steps/s (plain PyTorch)",
            f"{d['ratio']:.3f}",
            ">= 0.95",
            d["ratio"] >= 0.95,
        )
        epochs = 1 if quick else 10
        lin = measure(client, LINEAR_SGD, _linear, epochs, runs)
        yield Row(
            f"1b. training overhead: linear regression, batch 1, {2000 * epochs:,} steps",
            f"{lin['service']:,.0f} steps/s (service, job timestamps)",
            f"{lin['plain']:,.0f} steps/s (plain PyTorch)",
            f"{lin['ratio']:.3f}",
            ">= 0.9",
            lin["ratio"] >= 0.9,
        )
    yield from _loading_rows(lin["service"], epochs, runs)


def _batches_per_s(batches: plain_loop.Batches, rows: int = 2000) -> float:
    x, y = torch.rand(rows, 10), torch.rand(rows, 1)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        count = sum(1 for _ in batches(x, y, 1))
        times.append(time.perf_counter() - started)
    return count / statistics.median(times)


def _loading_rows(service: float, epochs: int, runs: int) -> Iterator[Row]:
    memory, loader = _batches_per_s(plain_loop.in_memory), _batches_per_s(plain_loop.data_loader)
    yield Row(
        "2a. data loading alone: batches of one row, an epoch of 2,000",
        f"{memory:,.0f} batches/s (in memory: one shuffle, then slices, as Descent's loop)",
        f"{loader:,.0f} batches/s (DataLoader over a TensorDataset, shuffled)",
        f"{memory / loader:.1f}x",
        "well over 10x (expected)",
        memory / loader > 10,
    )
    _linear_data_loader(1, 0)  # warmed up, as in measure()
    rates = []
    for seed in range(runs):
        steps, seconds = _linear_data_loader(epochs, seed)
        rates.append(steps / seconds)
    with_loader = statistics.median(rates)
    yield Row(
        f"2b. data loading in training: the SGD of 1b, {2000 * epochs:,} steps",
        f"{service:,.0f} steps/s (service, in-memory batches; from 1b)",
        f"{with_loader:,.0f} steps/s (plain PyTorch with the DataLoader, as the seeds write it)",
        f"{service / with_loader:.2f}x",
    )
