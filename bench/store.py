"""The metric store: points a worker writes per second, and reading a long curve back.

Writes go through the worker's real path (DatabaseRecorder's thread -> curves.record) into a
SQLite file, in chunks of whole steps as the training loop hands them over. Reads are timed
in process (curves.read, then curves.thin) and over HTTP from `descent api` on the same file.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bench import mlflow_store
from bench.report import Row
from bench.service import running_service
from service.db.engine import make_engine, reading
from service.db.migrate import migrate
from service.store import curves, job_queue
from worker.database_recorder import DatabaseRecorder
from worker.training.recorder import Chunk

#: steps per chunk: what a loop at 5,000 steps/s hands over at each 0.2 s flush, and the
#: size of MLflow's batches in the comparison
CHUNK_STEPS = mlflow_store.BATCH
#: the thinned read's points
THIN_POINTS = 1000


def chunks(steps: int, epoch_steps: int) -> list[Chunk]:
    """A run's chunks: a loss per step, and the per-epoch metrics at the end of each epoch."""
    out = []
    for start in range(1, steps + 1, CHUNK_STEPS):
        chunk = Chunk(step=min(start + CHUNK_STEPS, steps + 1) - 1, epoch=0)
        for step in range(start, chunk.step + 1):
            chunk.add("loss", step, 1.0 / step + 0.01 * math.sin(step))
            if step % epoch_steps == 0:
                for name in ("train_loss", "val_loss", "lr"):
                    chunk.add(name, step, 1.0 / step)
                chunk.epoch = step // epoch_steps
        out.append(chunk)
    return out


def _job(engine: Engine) -> tuple[int, str]:
    """A new job, claimed by the benchmark's worker: its primary key and id."""
    job = job_queue.create(engine, spec={}, owner=None, total_steps=1, total_epochs=1)
    claimed = job_queue.claim_next(engine, worker_id="bench", lease_seconds=600, has_gpu=False)
    assert claimed is not None and claimed.id == job.id
    return claimed.pk, job.id


def write(engine: Engine, run: list[Chunk]) -> tuple[float, int, str]:
    """Seconds from the first chunk handed over to the last one stored; the job's pk and id."""
    job_pk, job_id = _job(engine)
    recorder = DatabaseRecorder(
        engine,
        job_pk=job_pk,
        worker_id="bench",
        lease_seconds=600,
        heartbeat_seconds=0.25,
        shutdown=threading.Event(),
    )
    started = time.perf_counter()
    with recorder:
        for chunk in run:
            recorder.record(chunk)
    return time.perf_counter() - started, job_pk, job_id


def median_seconds(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(folder: Path, steps: int, runs: int) -> dict[str, float]:
    """Points written per second, and seconds to read the loss curve, whole and thinned."""
    url = f"sqlite:///{folder / 'store.db'}"
    engine = make_engine(url)
    migrate(engine)
    run = chunks(steps, epoch_steps=max(1, steps // 10))
    points = sum(len(s) for c in run for s, _ in c.series.values())
    written = [write(engine, run) for _ in range(runs)]
    _, job_pk, job_id = written[-1]

    def read() -> dict[str, tuple[list[int], list[float | None]]]:
        with reading(engine) as conn:
            return curves.read(conn, job_pk=job_pk, names=["loss"], after=None)

    assert len(read()["loss"][0]) == steps
    out = {
        "points_per_s": points / statistics.median(s for s, _, _ in written),
        "read_s": median_seconds(read, runs),
        "thin_s": median_seconds(lambda: curves.thin_all(read(), THIN_POINTS), runs),
    }
    engine.dispose()
    with running_service(workers=0, database_url=url) as client:
        path = f"/jobs/{job_id}/curves"

        def get(**params: int) -> None:
            client.get(path, params={"names": "loss", **params}).raise_for_status()

        get()  # the API's first request pays for lazy imports and the connection pool
        out["http_read_s"] = median_seconds(get, runs)
        out["http_thin_s"] = median_seconds(lambda: get(points=THIN_POINTS), runs)
    return out


def _mlflow(folder: Path, steps: int, runs: int) -> tuple[dict[str, float], str]:
    """MLflow's figures, or none and why."""
    try:
        return mlflow_store.measure(folder, steps, runs, THIN_POINTS), ""
    except mlflow_store.Unavailable as exc:
        return {}, f"MLflow not measured: {exc}"


def rows(quick: bool) -> Iterator[Row]:
    steps, runs = (5_000, 1) if quick else (100_000, 5)
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure(Path(tmp), steps, runs)
        theirs, why = _mlflow(Path(tmp), steps, min(runs, 3))
    rate = ours["points_per_s"]
    mlflow_rate = theirs.get("points_per_s")
    yield Row(
        f"3. metric store: points written per second by a worker, {steps:,}-step curve",
        f"{rate:,.0f} points/s (recorder thread -> SQLite, {CHUNK_STEPS:,}-step chunks)",
        f"{mlflow_rate:,.0f} points/s (MLflow, runs/log-batch of {CHUNK_STEPS:,})"
        if mlflow_rate
        else why,
        f"{rate / mlflow_rate:,.0f}" if mlflow_rate else "-",
        ">= 200,000 points/s",
        rate >= 200_000,
    )
    reads = [
        ("read", "in full", "metrics/get-history", 0.5),
        ("thin", f"thinned to {THIN_POINTS:,} points", "get-history-bulk-interval", 0.02),
    ]
    for key, what, endpoint, target in reads:
        http, local, mlflow = ours[f"http_{key}_s"], ours[f"{key}_s"], theirs.get(f"{key}_s")
        yield Row(
            f"3. metric store: reading a {steps:,}-step curve {what}",
            f"{http * 1000:,.1f} ms over HTTP ({local * 1000:,.1f} ms in process)",
            f"{mlflow * 1000:,.1f} ms (MLflow, {endpoint})" if mlflow else why,
            f"{http / mlflow:.3f} ({mlflow / http:,.0f}x faster)" if mlflow else "-",
            f"< {target * 1000:g} ms",
            http < target,
        )
