"""The data layer: claims, fenced writes, requeues, thinning, migrations started at once.

What both backends do is tested on both (`@both_backends`); SQLite's own settings on SQLite.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from sqlalchemy import Engine, inspect, select, update

from service.db.engine import make_engine, reading
from service.db.tables import JobRow
from service.schemas.jobs import JobStatus
from service.store import curves, job_queue
from tests.conftest import both_backends
from worker.training.recorder import Chunk


def _queue(engine: Engine, n: int = 1) -> list[str]:
    return [
        job_queue.create(
            engine, spec={"device": "cpu"}, owner=None, total_steps=1, total_epochs=1
        ).id
        for _ in range(n)
    ]


def _claim(engine: Engine, worker: str) -> job_queue.Claimed | None:
    return job_queue.claim_next(engine, worker_id=worker, lease_seconds=30, has_gpu=False)


@both_backends
def test_claims_oldest_first_and_once(engine: Engine) -> None:
    ids = _queue(engine, 3)
    claimed = [_claim(engine, "w") for _ in range(4)]
    assert [c.id if c else None for c in claimed] == [*ids, None]
    assert all(c.attempts == 1 for c in claimed if c)


@both_backends
def test_concurrent_claims_never_share_a_job(engine: Engine, db_url: str) -> None:
    ids = _queue(engine, 40)
    got: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        own = make_engine(db_url)  # a connection pool of its own, as a process would have
        while (claimed := _claim(own, name)) is not None:
            with lock:
                got.append(claimed.id)
        own.dispose()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)


@both_backends
def test_writes_are_fenced_by_the_holding_worker(engine: Engine) -> None:
    (job_id,) = _queue(engine)
    claimed = _claim(engine, "w1")
    assert claimed is not None
    chunk = Chunk(step=2, epoch=0)
    chunk.add("loss", 1, 0.5)
    chunk.add("loss", 2, 0.25)
    tails: dict[str, curves.SeriesTail] = {}
    assert not curves.record(engine, job_pk=claimed.pk, worker_id="w2", chunk=chunk, tails=tails)
    assert curves.record(engine, job_pk=claimed.pk, worker_id="w1", chunk=chunk, tails=tails)
    with reading(engine) as conn:
        assert curves.read(conn, job_pk=claimed.pk, names=None, after=None) == {
            "loss": ([1, 2], [0.5, 0.25])
        }
    assert job_queue.get(engine, job_id=job_id, owner=None).progress.step == 2
    assert not job_queue.finish(
        engine, job_pk=claimed.pk, worker_id="w2", status=JobStatus.succeeded
    )
    assert job_queue.finish(engine, job_pk=claimed.pk, worker_id="w1", status=JobStatus.succeeded)
    assert job_queue.poll(engine, job_pk=claimed.pk, worker_id="w1") == "lost"


@both_backends
def test_cancel_flag_reaches_the_worker(engine: Engine) -> None:
    (job_id,) = _queue(engine)
    claimed = _claim(engine, "w")
    assert claimed is not None
    assert job_queue.poll(engine, job_pk=claimed.pk, worker_id="w") == "held"
    assert job_queue.cancel(engine, job_id=job_id, owner=None).status == JobStatus.running
    assert job_queue.poll(engine, job_pk=claimed.pk, worker_id="w") == "cancel"


@both_backends
def test_expired_lease_requeues_and_drops_points(engine: Engine) -> None:
    (job_id,) = _queue(engine)
    claimed = _claim(engine, "dead")
    assert claimed is not None
    chunk = Chunk(step=1, epoch=0)
    chunk.add("loss", 1, 1.0)
    curves.record(engine, job_pk=claimed.pk, worker_id="dead", chunk=chunk, tails={})
    assert job_queue.requeue_expired(engine) == 0  # the lease is still good
    with engine.begin() as conn:
        conn.execute(update(JobRow).values(lease_expires_at=JobRow.created_at))
    assert job_queue.requeue_expired(engine) == 1
    job = job_queue.get(engine, job_id=job_id, owner=None)
    assert job.status == JobStatus.queued and job.progress.step == 0
    again = _claim(engine, "alive")
    assert again is not None and again.attempts == 2
    with reading(engine) as conn:
        assert curves.read(conn, job_pk=again.pk, names=None, after=None) == {}


@both_backends
def test_migrations_started_at_once_do_not_race(db_url: str, backend: str) -> None:
    code = (
        "from service.db.engine import make_engine; from service.db.migrate import migrate; "
        f"migrate(make_engine({db_url!r}))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    engine = make_engine(db_url)
    assert {"jobs", "curve_series", "curve_chunks", "job_parameters"} <= set(
        inspect(engine).get_table_names()
    )
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
        if backend == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        # a window's chunks by the range of their keys
        (
            'SELECT first_step, points, steps, "values" FROM curve_chunks '
            "WHERE series_id = 1 AND level = 0 AND seq BETWEEN 3 AND 9 ORDER BY seq",
            "sqlite_autoindex_curve_chunks_1",
        ),
        # the chunk that holds a step: the last one that starts at or before it
        (
            "SELECT seq FROM curve_chunks WHERE series_id = 1 AND level = 0 "
            "AND first_step <= 500 ORDER BY first_step DESC LIMIT 1",
            "ix_curve_chunks_first_step",
        ),
    ],
)
def test_curve_reads_are_index_range_scans(engine: Engine, query: str, index: str) -> None:
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}").all()
    detail = " ".join(str(row[-1]) for row in plan)
    assert index in detail and "TEMP B-TREE" not in detail


# --- thinning -----------------------------------------------------------------------------


@pytest.mark.parametrize("points", [2, 3, 4, 7, 100])
def test_thin_keeps_first_last_and_extremes(points: int) -> None:
    steps = list(range(1, 1001))
    values: list[float | None] = [float((i * 37) % 101) for i in steps]
    values[500] = 1e6  # a spike
    values[700] = -1e6
    kept_steps, kept_values = curves.thin(steps, values, points)
    assert len(kept_steps) <= points
    assert kept_steps[0] == 1 and kept_steps[-1] == 1000
    assert kept_steps == sorted(set(kept_steps))
    assert all(values[s - 1] == v for s, v in zip(kept_steps, kept_values, strict=True))
    if points >= 4:
        assert 1e6 in kept_values and -1e6 in kept_values
    if points == 3:
        assert 1e6 in kept_values or -1e6 in kept_values


def test_thin_leaves_short_series_alone_and_handles_nulls() -> None:
    assert curves.thin([1, 2, 3], [1.0, None, 3.0], 5) == ([1, 2, 3], [1.0, None, 3.0])
    steps = list(range(100))
    values: list[float | None] = [None] * 100
    values[50] = 2.0
    kept_steps, kept_values = curves.thin(steps, values, 10)
    assert len(kept_steps) <= 10 and 2.0 in kept_values


@both_backends
def test_job_row_status_values_match_the_enum(engine: Engine) -> None:
    _queue(engine)
    with reading(engine) as conn:
        assert conn.execute(select(JobRow.status)).scalar() == "queued"


@both_backends
def test_migrations_build_exactly_the_models(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from service.db.tables import Base

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
