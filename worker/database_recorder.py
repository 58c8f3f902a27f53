"""The database recorder: the training loop hands it chunks, a thread writes them.

Writing happens off the training thread, so the loop never waits on SQLite or PostgreSQL.
A second thread watches the job: it renews the lease and notices a cancel request or a job
that is no longer this worker's, and `should_stop()` tells the loop at its next flush.
Parameters still queued when newer ones arrive are dropped unwritten: only the latest are kept,
and a large model's copies waiting on a slow database would otherwise pile up in memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from service.store import curves, job_queue, workers
from worker.training.recorder import Chunk

log = logging.getLogger(__name__)

#: chunks the writer may fall behind by before the loop waits for it (bounds memory)
MAX_QUEUED_CHUNKS = 64
#: queued chunks the writer writes in one transaction
MAX_BATCHED_CHUNKS = 64
#: tries at writing a chunk whose connection the database dropped (a restart, a failover)
WRITE_ATTEMPTS = 5
#: seconds before the second try at a chunk; a third waits twice that, and so on
RETRY_SECONDS = 0.5


class DatabaseRecorder:
    """Records one job's chunks; use as a context manager around the run."""

    def __init__(
        self,
        engine: Engine,
        *,
        job_pk: int,
        worker_id: str,
        lease_seconds: float,
        heartbeat_seconds: float,
        shutdown: threading.Event,
    ) -> None:
        self.engine, self.job_pk, self.worker_id = engine, job_pk, worker_id
        self.lease_seconds, self.heartbeat_seconds = lease_seconds, heartbeat_seconds
        self.shutdown = shutdown
        #: why the run should stop: None, "cancel", "lost" or "shutdown"
        self.reason: str | None = None
        #: the job's series as this writer left them (`curves.record` keeps it)
        self._tails: dict[str, curves.SeriesTail] = {}
        self._queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=MAX_QUEUED_CHUNKS)
        #: the queued chunk whose parameters are the newest not yet taken by the writer
        self._newest_parameters: Chunk | None = None
        self._parameters_lock = threading.Lock()
        self._done = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="recorder-writer")
        self._watcher = threading.Thread(target=self._watch_loop, name="recorder-watch")
        self.error: BaseException | None = None

    def __enter__(self) -> DatabaseRecorder:
        self._writer.start()
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, chunk: Chunk) -> None:
        if chunk.parameters is not None:
            with self._parameters_lock:
                if self._newest_parameters is not None:
                    self._newest_parameters.parameters = None  # superseded, never to be written
                self._newest_parameters = chunk
        self._queue.put(chunk)

    def _take_parameters(self, chunk: Chunk) -> bytes | bytearray | None:
        """The chunk's parameters, unless newer ones were queued after it."""
        with self._parameters_lock:
            if self._newest_parameters is chunk:
                self._newest_parameters = None
            return chunk.parameters

    def should_stop(self) -> bool:
        if self.shutdown.is_set() and self.reason is None:
            self.reason = "shutdown"
        return self.reason is not None

    def close(self) -> None:
        """Wait until every chunk is written; after this the job's points are all stored."""
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        self._done.set()
        if self._watcher.is_alive():
            self._watcher.join()
        if self.error is not None:
            raise RuntimeError(f"writing the job's curves failed: {self.error}") from self.error

    def _write_loop(self) -> None:
        closing = False
        while not closing:
            chunk, closing = self._next_batch()
            if chunk is None:
                continue
            if self.reason == "lost" or self.error is not None:
                continue  # the job is gone or broken: drain without writing
            try:
                held = self._record(chunk)
            except Exception as exc:  # noqa: BLE001 - reported by close() in the job's thread
                log.exception("job %s: writing a chunk failed", self.job_pk)
                self.error = exc
                continue
            if not held:
                self.reason = "lost"

    def _next_batch(self) -> tuple[Chunk | None, bool]:
        """The queued chunks as one, and whether the queue is closed after them.

        A writer that fell behind writes what waits in one transaction, so a fast loop on a
        slow database costs one commit per batch, not one per flush. A chunk that carries a
        checkpoint or parameters ends a batch: they are stored with its own step.
        """
        batch: list[Chunk] = []
        closing = False
        while len(batch) < MAX_BATCHED_CHUNKS:
            try:
                chunk = self._queue.get() if not batch else self._queue.get_nowait()
            except queue.Empty:
                break
            if chunk is None:
                closing = True
                break
            batch.append(chunk)
            if chunk.checkpoint is not None or chunk.parameters is not None:
                break
        return (_merged(batch) if batch else None), closing

    def _record(self, chunk: Chunk) -> bool:
        """Write one chunk; one the database dropped the connection of is written again."""
        parameters = self._take_parameters(chunk)
        attempt = 1
        while True:
            try:
                # `_tails` changes only once a write has committed, so a failed try leaves
                # nothing of itself behind
                return curves.record(
                    self.engine,
                    job_pk=self.job_pk,
                    worker_id=self.worker_id,
                    chunk=chunk,
                    tails=self._tails,
                    parameters=parameters,
                )
            except DBAPIError as exc:
                if not exc.connection_invalidated or attempt >= WRITE_ATTEMPTS:
                    raise
            log.warning("job %s: the database connection dropped; writing again", self.job_pk)
            time.sleep(RETRY_SECONDS * attempt)
            attempt += 1

    def _watch_loop(self) -> None:
        renew_every = self.lease_seconds / 3
        last_renewal = time.monotonic()
        while not self._done.wait(self.heartbeat_seconds):
            try:
                state = job_queue.poll(self.engine, job_pk=self.job_pk, worker_id=self.worker_id)
                if state == "held" and time.monotonic() - last_renewal >= renew_every:
                    if not job_queue.heartbeat(
                        self.engine,
                        job_pk=self.job_pk,
                        worker_id=self.worker_id,
                        lease_seconds=self.lease_seconds,
                    ):
                        state = "lost"
                    workers.seen(self.engine, worker_id=self.worker_id)  # for /health
                    last_renewal = time.monotonic()
            except Exception:  # noqa: BLE001 - a missed heartbeat is retried; the lease is long
                log.warning("job %s: heartbeat failed", self.job_pk, exc_info=True)
                continue
            if state != "held" and self.reason is None:
                self.reason = state


def _merged(batch: list[Chunk]) -> Chunk:
    """Consecutive chunks as one: their points in order, the last one's progress, and the
    checkpoint and parameters of the last (only the last may carry them)."""
    if len(batch) == 1:
        return batch[0]
    last = batch[-1]
    merged = Chunk(step=last.step, epoch=last.epoch, checkpoint=last.checkpoint)
    merged.parameters = last.parameters
    for chunk in batch:
        for name, (steps, values) in chunk.series.items():
            into = merged.series.setdefault(name, ([], []))
            into[0].extend(steps)
            into[1].extend(values)
        merged.trajectory.extend(chunk.trajectory)
    return merged
