"""Recording cost: a 100,000-step job with its curve written to SQLite, against discarding it."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from service import jobs
from service.db.engine import make_engine
from service.db.migrate import migrate
from service.schemas.spec import FitSpec
from worker.recorder import DatabaseRecorder
from worker.training.loop import train
from worker.training.recorder import Chunk

#: linear regression with batch size 1: 10,000 training rows x 10 epochs = 100,000 steps
SPEC = {
    "model": {"type": "linear"},
    "data": {"type": "linear", "n_samples": 12_500, "n_features": 10, "x_range": [-1, 1]},
    "optimizer": {"type": "sgd", "lr": 0.001},
    "batch_size": 1,
    "epochs": 10,
    "device": "cpu",
}


class DiscardingRecorder:
    def record(self, chunk: Chunk) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def _with_database(spec: FitSpec, folder: Path, run: int) -> float:
    engine = make_engine(f"sqlite:///{folder / f'rec{run}.db'}")
    migrate(engine)
    jobs.create(
        engine, spec=spec.model_dump(mode="json"), owner=None, total_steps=1, total_epochs=1
    )
    claimed = jobs.claim_next(engine, worker_id="bench", lease_seconds=60, has_gpu=False)
    assert claimed is not None
    recorder = DatabaseRecorder(
        engine,
        job_pk=claimed.pk,
        worker_id="bench",
        lease_seconds=60,
        heartbeat_seconds=0.25,
        shutdown=threading.Event(),
    )
    started = time.perf_counter()
    with recorder:
        train(spec, recorder)
    seconds = time.perf_counter() - started  # the writes are all stored by now
    engine.dispose()
    return seconds


def measure(runs: int = 3) -> dict[str, float]:
    spec = FitSpec.model_validate(SPEC)
    discarded, stored = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            started = time.perf_counter()
            train(spec, DiscardingRecorder())
            discarded.append(time.perf_counter() - started)
            stored.append(_with_database(spec, Path(tmp), run))
    return {
        "steps": spec.total_steps,
        "discarded_s": statistics.median(discarded),
        "stored_s": statistics.median(stored),
        "ratio": statistics.median(discarded) / statistics.median(stored),
    }
