"""Training overhead: the digits MLP through the service against the plain loop."""

from __future__ import annotations

import statistics
from typing import Any

from bench.plain_loop import train_digits
from bench.service import job_seconds, run_job, running_service

DIGITS_MLP: dict[str, Any] = {
    "model": {"type": "mlp", "hidden": [128], "activation": "relu"},
    "data": {"type": "digits"},
    "optimizer": {"type": "adam", "lr": 0.001},
    "batch_size": 64,
    "device": "cpu",
}


def measure(epochs: int = 100, runs: int = 3) -> dict[str, float]:
    """Median steps per second of each, interleaved so drift in the machine hits both."""
    plain, service = [], []
    with running_service(workers=1) as client:
        for seed in range(runs):
            steps, seconds = train_digits(epochs, seed=seed)
            plain.append(steps / seconds)
            job = run_job(client, {**DIGITS_MLP, "epochs": epochs, "seed": seed})
            service.append(job["result"]["steps"] / job_seconds(job))
    return {
        "plain_steps_per_s": statistics.median(plain),
        "service_steps_per_s": statistics.median(service),
        "ratio": statistics.median(service) / statistics.median(plain),
    }
