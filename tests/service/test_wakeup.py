"""Idle workers' wake-up: which transitions notify, and the waiter on both backends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, update
from sqlalchemy.engine import make_url

from service.db.tables import JobRow
from service.store import job_queue
from service.wakeup import CHANNEL, Waiter
from tests.conftest import POSTGRES_ADMIN_URL

on_postgres = pytest.mark.parametrize("backend", ["postgresql"])


def _queue(engine: Engine) -> str:
    return job_queue.create(
        engine, spec={"device": "cpu"}, owner=None, total_steps=1, total_epochs=1
    ).id


def _claim(engine: Engine) -> job_queue.Claimed:
    claimed = job_queue.claim_next(engine, worker_id="w", lease_seconds=30, has_gpu=False)
    assert claimed is not None
    return claimed


@pytest.fixture
def listener(db_url: str) -> Iterator[psycopg.Connection]:
    conninfo = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield conn


def _notified(conn: psycopg.Connection, timeout: float = 2.0) -> int:
    return len(list(conn.notifies(timeout=timeout, stop_after=1)))


@on_postgres
def test_a_job_becoming_queued_notifies(engine: Engine, listener: psycopg.Connection) -> None:
    _queue(engine)
    assert _notified(listener) == 1
    claimed = _claim(engine)
    assert _notified(listener, timeout=0.2) == 0  # a claim wakes no one
    assert job_queue.release(engine, job_pk=claimed.pk, worker_id="w")
    assert _notified(listener) == 1
    _claim(engine)
    with engine.begin() as conn:
        conn.execute(update(JobRow).values(lease_expires_at=JobRow.created_at))
    assert job_queue.requeue_expired(engine) == 1
    assert _notified(listener) == 1


def test_on_sqlite_the_waiter_polls(db_url: str) -> None:
    waiter = Waiter(db_url, poll_seconds=0.01, fallback_seconds=5)
    started = time.monotonic()
    waiter.wait(threading.Event())
    assert time.monotonic() - started < 0.5
    waiter.close()


@on_postgres
def test_the_waiter_wakes_on_notify_and_falls_back(engine: Engine, db_url: str) -> None:
    waiter = Waiter(db_url, poll_seconds=0.01, fallback_seconds=0.5)
    stop = threading.Event()
    waiter.wait(stop)  # connects and listens, then returns: the caller looks at the queue

    started = time.monotonic()
    waiter.wait(stop)  # nothing queued: the fallback poll
    assert time.monotonic() - started >= 0.5

    threading.Timer(0.1, _queue, args=(engine,)).start()
    started = time.monotonic()
    waiter.wait(stop)
    assert time.monotonic() - started < 0.45

    stop.set()
    started = time.monotonic()
    waiter.wait(stop)
    assert time.monotonic() - started < 0.1
    waiter.close()


@on_postgres
def test_the_waiter_listens_again_after_its_connection_drops(engine: Engine, db_url: str) -> None:
    waiter = Waiter(db_url, poll_seconds=0.01, fallback_seconds=5)
    stop = threading.Event()
    waiter.wait(stop)
    assert waiter._conn is not None
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (waiter._conn.info.backend_pid,))
    started = time.monotonic()
    waiter.wait(stop)  # notices the drop at once, rather than after the fallback
    waiter.wait(stop)  # listens again
    assert time.monotonic() - started < 2
    threading.Timer(0.1, _queue, args=(engine,)).start()
    started = time.monotonic()
    waiter.wait(stop)
    assert time.monotonic() - started < 2
    waiter.close()
