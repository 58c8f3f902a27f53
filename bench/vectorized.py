"""Vectorised sweeps: R learning rates of the digits MLP as one group against R jobs in a row.

Both sides run in this process, as a worker would run them: `train` once per spec (its data
made from the spec each time, as a job's are), and `train_many` once for all of them. The
repeats are interleaved, so drift in the machine's load hits both; the figures are medians.
The curves of the group are also checked against the runs trained alone. With one torch thread
the group's parameters are those of the runs alone bit for bit; with more, BLAS may split a
small product of `train`'s across threads and round otherwise, so that `train` alone differs
from itself between thread counts (the group does not), and a fast-learning run drifts.

    python -m bench.vectorized [--threads N] [--epochs E] [--repeats K]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch

from service.spec import FitSpec
from worker.training.fit import train
from worker.training.group import train_many
from worker.training.recorder import MemoryRecorder

DIGITS_MLP: dict[str, Any] = {
    "model": {"type": "mlp", "hidden": [128], "activation": "relu"},
    "data": {"type": "digits"},
    "optimizer": {"type": "adam", "lr": 0.001},
    "batch_size": 64,
    "device": "cpu",
    "seed": 0,
}


def sweep(runs: int, epochs: int) -> list[FitSpec]:
    """`runs` learning rates, log-spaced from 1e-4 to 1e-1, of the digits MLP."""
    rates = np.geomspace(1e-4, 1e-1, runs)
    return [
        FitSpec.model_validate(
            {**DIGITS_MLP, "epochs": epochs, "optimizer": {"type": "adam", "lr": float(lr)}}
        )
        for lr in rates
    ]


def one_after_another(specs: list[FitSpec]) -> tuple[float, list[MemoryRecorder]]:
    recorders = [MemoryRecorder() for _ in specs]
    started = time.perf_counter()
    for spec, recorder in zip(specs, recorders, strict=True):
        train(spec, recorder)
    return time.perf_counter() - started, recorders


def together(specs: list[FitSpec]) -> tuple[float, list[MemoryRecorder]]:
    recorders = [MemoryRecorder() for _ in specs]
    started = time.perf_counter()
    outcomes = train_many(specs, recorders)
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if isinstance(o, Exception)]
    if failed:
        raise RuntimeError(f"runs of the group failed: {failed}")
    return elapsed, recorders


def largest_difference(a: list[MemoryRecorder], b: list[MemoryRecorder]) -> float:
    """The largest relative difference between the loss curves of the two sides."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        u = np.array(x.series["loss"][1], dtype=np.float64)
        v = np.array(y.series["loss"][1], dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(u - v) / np.abs(v))))
    return worst


def measure(
    runs: tuple[int, ...] = (4, 16, 64),
    epochs: int = 20,
    *,
    epochs_64: int = 5,
    repeats: int = 3,
    threads: int | None = None,
) -> dict[int, dict[str, float]]:
    """Seconds of each side and their ratio per group size (64 runs train `epochs_64`)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        train(sweep(1, 1)[0], MemoryRecorder())  # torch's lazy first-call costs, off the clock
        results = {}
        for r in runs:
            specs = sweep(r, epochs if r < 64 else epochs_64)
            alone, grouped = [], []
            for _ in range(repeats):
                seconds, recorders_alone = one_after_another(specs)
                alone.append(seconds)
                seconds, recorders_grouped = together(specs)
                grouped.append(seconds)
            results[r] = {
                "epochs": float(specs[0].epochs),
                "one_after_another_s": statistics.median(alone),
                "together_s": statistics.median(grouped),
                "ratio": statistics.median(alone) / statistics.median(grouped),
                "largest_loss_difference": largest_difference(recorders_grouped, recorders_alone),
            }
        return results
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--epochs-64", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, nargs="+", default=[4, 16, 64])
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    results = measure(
        tuple(args.runs),
        args.epochs,
        epochs_64=args.epochs_64,
        repeats=args.repeats,
        threads=threads,
    )
    print(f"digits MLP [128], Adam, batch 64, float32, CPU, {threads} torch thread(s)")
    print("| runs | epochs | one after another | together | ratio | largest loss difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r, f in results.items():
        print(
            f"| {r} | {f['epochs']:.0f} | {f['one_after_another_s']:.2f} s | "
            f"{f['together_s']:.2f} s | {f['ratio']:.2f} | {f['largest_loss_difference']:.1e} |"
        )


if __name__ == "__main__":
    main()
