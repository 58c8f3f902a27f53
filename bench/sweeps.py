"""Sweeps vectorised: R learning rates of the digits MLP as one group against one at a time.

Two rows. In process (bench/vectorized.py): `train_many` against `train` run R times, for 4,
16 and 64 runs. Through the service, as the issue states the target: the same 16-run sweep on
one worker, once with `DESCENT_GROUP_RUNS=1` (16 jobs one after another) and once grouped;
each side's time runs from the first job's start to the last job's end, by their timestamps.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import numpy as np

from bench.report import Row
from bench.service import running_service
from bench.vectorized import DIGITS_MLP, measure

IN_PROCESS = "5a. sweeps vectorised, in process: R runs of the digits MLP, group / one by one"
SERVICE = "5b. sweeps vectorised, one worker: 16 learning rates of the digits MLP"
TARGET = 5.0


def rows(quick: bool) -> Iterator[Row]:
    if quick:
        result = measure(runs=(4,), epochs=2, epochs_64=1, repeats=1)
    else:
        result = measure(runs=(4, 16, 64))
    yield Row(
        IN_PROCESS,
        ", ".join(f"{n}: {v['together_s']:.2f} s" for n, v in result.items()),
        ", ".join(f"{n}: {v['one_after_another_s']:.2f} s" for n, v in result.items()),
        ", ".join(f"{n}: {v['ratio']:.2f}" for n, v in result.items()),
    )
    runs, epochs, repeats = (4, 2, 1) if quick else (16, 20, 3)
    alone = statistics.median(_sweep_seconds(runs, epochs, group=1) for _ in range(repeats))
    grouped = statistics.median(_sweep_seconds(runs, epochs, group=64) for _ in range(repeats))
    yield Row(
        SERVICE if not quick else SERVICE.replace("16", str(runs)),
        f"{grouped:.2f} s as one group ({epochs} epochs each)",
        f"{alone:.2f} s one after another",
        f"{alone / grouped:.2f}",
        f">= {TARGET:g}x",
        alone / grouped >= TARGET,
    )


def _sweep_seconds(runs: int, epochs: int, *, group: int) -> float:
    """From the sweep's first start to its last end, on one worker taking `group` at once."""
    lrs = [float(lr) for lr in np.geomspace(1e-4, 1e-1, runs)]
    body = {"base": {**DIGITS_MLP, "epochs": epochs}, "grid": {"optimizer.lr": lrs}}
    with running_service(workers=1, settings={"DESCENT_GROUP_RUNS": str(group)}) as client:
        sweep = client.post("/sweeps", json=body).json()
        runs_done = _wait(client, sweep["id"])
    starts = [datetime.fromisoformat(job["started_at"]) for job in runs_done]
    ends = [datetime.fromisoformat(job["finished_at"]) for job in runs_done]
    return (max(ends) - min(starts)).total_seconds()


def _wait(client: httpx.Client, sweep_id: str) -> list[dict[str, Any]]:
    while True:
        runs = client.get(f"/sweeps/{sweep_id}").json()["runs"]
        if all(run["status"] not in ("queued", "running") for run in runs):
            break
        time.sleep(0.25)
    if any(run["status"] != "succeeded" for run in runs):
        raise RuntimeError(f"sweep {sweep_id}: {[run['status'] for run in runs]}")
    return [client.get(f"/jobs/{run['job_id']}").json() for run in runs]
