"""The workers table: which worker processes are alive, for `GET /health`.

A worker says it is alive when it is ready, on each of its idle loop's requeue ticks and on
each heartbeat of a job it runs; each says so at least once a third of a lease, so a worker
not seen within a lease has died (or lost the database).
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from service.db.engine import reading, writing
from service.db.tables import WorkerRow, utcnow


def seen(engine: Engine, *, worker_id: str, device: str | None = None) -> None:
    """Mark the calling process's worker alive now; `device` as it trains (kept if None)."""
    now = utcnow()
    row = {"worker_id": worker_id, "host": socket.gethostname(), "pid": os.getpid()}
    # both dialects take INSERT ... ON CONFLICT DO UPDATE, each through its own construct
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(WorkerRow).values(**row, device=device, started_at=now, seen_at=now)
    changes: dict[str, Any] = {"seen_at": now}
    if device is not None:
        changes["device"] = device
    with writing(engine) as conn:
        conn.execute(insert.on_conflict_do_update(index_elements=["worker_id"], set_=changes))


def gone(engine: Engine, *, worker_id: str) -> None:
    """Forget a worker that stops: it no longer counts, even within its lease."""
    with writing(engine) as conn:
        conn.execute(delete(WorkerRow).where(WorkerRow.worker_id == worker_id))


def count_alive(engine: Engine, *, within_seconds: float) -> int:
    """The workers seen in the last `within_seconds`."""
    since = utcnow() - timedelta(seconds=within_seconds)
    query = select(func.count()).select_from(WorkerRow).where(WorkerRow.seen_at >= since)
    with reading(engine) as conn:
        return int(conn.execute(query).scalar_one())


def health(engine: Engine, *, within_seconds: float) -> dict[str, Any]:
    """`/health`'s answer: the database answers (the count is the query that shows it), and
    this many workers are alive. Raises whatever the database raises when it does not answer.
    """
    alive = count_alive(engine, within_seconds=within_seconds)
    return {"status": "ok", "database": engine.dialect.name, "workers": alive}
