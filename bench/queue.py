"""Queue latency: from POST to `running` with an idle worker."""

from __future__ import annotations

import statistics
import time

from bench.service import running_service

TINY = {
    "model": {"type": "linear"},
    "data": {"type": "linear", "n_samples": 16},
    "optimizer": {"type": "sgd", "lr": 0.01},
    "epochs": 1,
    "device": "cpu",
}


def measure(jobs: int = 50) -> dict[str, float]:
    waits = []
    with running_service(workers=1) as client:
        for seed in range(jobs):
            time.sleep(0.05)  # the worker is idle again, polling
            sent = time.perf_counter()
            job = client.post("/jobs", json={**TINY, "seed": seed}).json()
            while client.get(f"/jobs/{job['id']}").json()["status"] == "queued":
                pass
            waits.append(time.perf_counter() - sent)
    return {
        "median_ms": statistics.median(waits) * 1000,
        "p90_ms": statistics.quantiles(waits, n=10)[-1] * 1000,
    }
