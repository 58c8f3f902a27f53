"""The queue: from POST to `running` with an idle worker, and tiny jobs finished per second."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx

from bench.postgres import postgres_database, postgres_down
from bench.report import Row, not_measured
from bench.service import running_service

#: ten steps of batch gradient descent on 16 rows: a job that is nearly all queue
TINY: dict[str, Any] = {
    "model": {"type": "linear"},
    "data": {"type": "linear", "n_samples": 16},
    "optimizer": {"type": "sgd", "lr": 0.01},
    "batch_size": None,
    "epochs": 10,
    "validation_split": 0,
    "device": "cpu",
}


def _wait_until_done(client: httpx.Client, job_id: str) -> None:
    while client.get(f"/jobs/{job_id}").json()["status"] in ("queued", "running"):
        time.sleep(0.01)


def latency(client: httpx.Client, jobs: int) -> dict[str, float]:
    """Median seconds from sending the POST to seeing `running`, and of the POST alone."""
    _wait_until_done(client, client.post("/jobs", json=TINY).json()["id"])  # worker warm
    waits, posts = [], []
    for seed in range(jobs):
        sent = time.perf_counter()
        job = client.post("/jobs", json={**TINY, "seed": seed}).json()
        posts.append(time.perf_counter() - sent)
        while client.get(f"/jobs/{job['id']}").json()["status"] == "queued":
            time.sleep(0.001)
        waits.append(time.perf_counter() - sent)
        _wait_until_done(client, job["id"])
        time.sleep(0.05)  # the worker is idle again, looking at the queue
    return {
        "median_s": statistics.median(waits),
        "p90_s": statistics.quantiles(waits, n=10)[-1],
        "post_s": statistics.median(posts),
    }


def _all_jobs(client: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = client.get("/jobs", params=params).json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


def throughput(client: httpx.Client, jobs: int) -> float:
    """Tiny jobs finished per second: from the first one created to the last one finished."""

    def submit(seed: int) -> str:
        return str(client.post("/jobs", json={**TINY, "seed": seed}).json()["id"])

    with ThreadPoolExecutor(4) as pool:  # several at once, as a sweep's client would
        ids = set(pool.map(submit, range(jobs)))
    while client.get("/jobs", params={"status": "queued", "limit": 1}).json()["items"]:
        time.sleep(0.2)
    while client.get("/jobs", params={"status": "running", "limit": 1}).json()["items"]:
        time.sleep(0.05)
    done = [j for j in _all_jobs(client) if j["id"] in ids]
    if len(done) != jobs or any(j["status"] != "succeeded" for j in done):
        raise RuntimeError("a tiny job did not succeed")
    first = min(datetime.fromisoformat(j["created_at"]) for j in done)
    last = max(datetime.fromisoformat(j["finished_at"]) for j in done)
    return jobs / (last - first).total_seconds()


def _latency_row(label: str, q: dict[str, float], jobs: int) -> Row:
    return Row(
        f"4. queue: POST to running, idle worker, {label}",
        f"median {q['median_s'] * 1000:.1f} ms, p90 {q['p90_s'] * 1000:.1f} ms ({jobs} jobs)",
        f"{q['post_s'] * 1000:.1f} ms (the POST alone)",
        f"{q['median_s'] / q['post_s']:.1f}",
        "< 50 ms",
        q["median_s"] < 0.050,
    )


def rows(quick: bool) -> Iterator[Row]:
    jobs, n = (5, 20) if quick else (50, 500)
    with running_service(workers=1) as client:
        yield _latency_row("SQLite", latency(client, jobs), jobs)
        one = throughput(client, n)
    label = "PostgreSQL, LISTEN/NOTIFY"
    if (down := postgres_down()) is not None:
        yield not_measured(f"4. queue: POST to running, idle worker, {label}", f"no server: {down}")
    else:
        with postgres_database() as url, running_service(workers=1, database_url=url) as client:
            yield _latency_row(label, latency(client, jobs), jobs)
    with running_service(workers=2) as client:
        _wait_until_done(client, client.post("/jobs", json=TINY).json()["id"])
        two = throughput(client, n)
    yield Row(
        f"4. queue: {n} jobs of 10 steps, SQLite",
        f"{two:.1f} jobs/s finished (2 workers)",
        f"{one:.1f} jobs/s (1 worker)",
        f"{two / one:.2f}",
    )
