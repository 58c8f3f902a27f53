"""The database recorder writes what waits for it in one transaction: every point once, in
order, and a checkpoint stored with its own step (a chunk that carries one ends a batch)."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, event, select

from service.db.engine import reading
from service.db.tables import CheckpointRow, JobRow
from service.store import curves, job_queue
from tests.conftest import both_backends
from worker.database_recorder import DatabaseRecorder
from worker.training.recorder import Chunk


def _recorder(engine: Engine) -> DatabaseRecorder:
    job_queue.create(engine, spec={"device": "cpu"}, owner=None, total_steps=1, total_epochs=1)
    claimed = job_queue.claim_next(engine, worker_id="w", lease_seconds=30, has_gpu=False)
    assert claimed is not None
    return DatabaseRecorder(
        engine,
        job_pk=claimed.pk,
        worker_id="w",
        lease_seconds=30,
        heartbeat_seconds=10,
        shutdown=threading.Event(),
    )


@both_backends
def test_chunks_that_waited_are_written_together_and_a_checkpoint_ends_a_batch(
    engine: Engine,
) -> None:
    recorder = _recorder(engine)
    chunks = []
    for k in range(10):  # queued before the writer starts: all ten wait at once
        chunk = Chunk(step=10 * (k + 1), epoch=k + 1)
        for step in range(10 * k + 1, 10 * (k + 1) + 1):
            chunk.add("loss", step, 1.0 / step)
        chunk.add("val_loss", chunk.step, float(k))
        if k == 4:
            chunk.checkpoint = b"state after step 50"
        chunks.append(chunk)
        recorder.record(chunk)
    commits: list[int] = []

    def count(conn: object) -> None:
        commits.append(1)

    event.listen(engine, "commit", count)
    with recorder:
        pass
    event.remove(engine, "commit", count)
    with reading(engine) as conn:
        series = curves.read(conn, job_pk=recorder.job_pk, names=None)
        saved = conn.execute(select(CheckpointRow.step, CheckpointRow.epoch)).one()
    assert series["loss"] == (list(range(1, 101)), [1.0 / s for s in range(1, 101)])
    assert series["val_loss"] == (list(range(10, 101, 10)), [float(k) for k in range(10)])
    assert tuple(saved) == (50, 5)
    # chunks 1-5 (the checkpoint ends that batch), then 6-10: two transactions, not ten
    assert len(commits) == 2
    with reading(engine) as conn:
        job_id = conn.execute(select(JobRow.id)).scalar_one()
    assert job_queue.get(engine, job_id=job_id, owner=None).progress.step == 100
