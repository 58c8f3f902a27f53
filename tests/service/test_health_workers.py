"""`/health` counts the workers seen within a lease, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from service.config import Settings
from service.db.engine import writing
from service.db.tables import WorkerRow, utcnow
from service.main import create_app
from service.store import workers
from tests.conftest import both_backends, fit_spec, free_port
from worker.claims import Worker


def alive(client: TestClient) -> int:
    answer = client.get("/health")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ok"
    return answer.json()["workers"]  # type: ignore[no-any-return]


def wait_for(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@both_backends
def test_a_worker_counts_while_seen_within_a_lease(
    client: TestClient, engine: Engine, settings: Settings, backend: str
) -> None:
    assert client.get("/health").json() == {"status": "ok", "database": backend, "workers": 0}
    workers.seen(engine, worker_id="host:1:a", device="cpu")
    workers.seen(engine, worker_id="host:1:a")  # a heartbeat: again, without the device
    assert alive(client) == 1
    workers.seen(engine, worker_id="host:2:b", device="cpu")
    assert alive(client) == 2
    with writing(engine) as conn:  # b was last seen just over a lease ago
        long_ago = utcnow() - timedelta(seconds=settings.lease_seconds + 1)
        conn.execute(
            update(WorkerRow).where(WorkerRow.worker_id == "host:2:b").values(seen_at=long_ago)
        )
    assert alive(client) == 1
    workers.seen(engine, worker_id="host:2:b")  # b is back
    assert alive(client) == 2
    workers.gone(engine, worker_id="host:1:a")
    workers.gone(engine, worker_id="host:2:b")
    assert alive(client) == 0
    assert workers.count_alive(engine, within_seconds=3600) == 0


@both_backends
def test_seen_keeps_the_start_and_the_device(engine: Engine) -> None:
    workers.seen(engine, worker_id="w", device="cuda:1")
    time.sleep(0.01)
    workers.seen(engine, worker_id="w")
    with engine.connect() as conn:
        row = conn.execute(select(WorkerRow)).one()
    assert (row.worker_id, row.device, row.pid) == ("w", "cuda:1", os.getpid())
    assert row.host == socket.gethostname()
    assert row.started_at < row.seen_at


@both_backends
def test_the_worker_loop_is_seen_until_it_stops(client: TestClient, settings: Settings) -> None:
    loop = Worker(settings, device="cpu")
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        wait_for(lambda: alive(client) == 1)
        with loop.engine.connect() as conn:
            assert conn.execute(select(WorkerRow.worker_id, WorkerRow.device)).one() == (
                loop.id,
                "cpu",
            )
    finally:
        loop.stop.set()
        thread.join(timeout=30)
    assert alive(client) == 0


def test_a_running_jobs_heartbeat_marks_its_worker_seen(
    client: TestClient, settings: Settings, engine: Engine
) -> None:
    # leases of 0.3 s: the lease (and the worker's mark) is renewed every 0.1 s while it runs
    fast = settings.model_copy(update={"lease_seconds": 0.3, "heartbeat_seconds": 0.02})
    loop = Worker(fast, device="cpu")
    client.post("/jobs", json=fit_spec(epochs=150, batch_size=1))  # about 10,000 steps
    assert loop.run_one()  # only run_one: no mark but the heartbeat's
    with engine.connect() as conn:
        assert conn.execute(select(WorkerRow.worker_id)).scalars().all() == [loop.id]


def test_a_database_that_does_not_answer_is_503() -> None:
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none?connect_timeout=2"
    with TestClient(create_app(Settings(database_url=nowhere), run_migrations=False)) as client:
        answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable" and "workers" not in answer.json()
