"""Migration 0007: a database full of point rows (`curve_points`, the schema before chunks)
becomes chunks and summaries that read back exactly the same, whole, windowed and thinned; a
job rewound to its checkpoint before the migration runs on and appends after it; and `descent
up` on an old database migrates it as it starts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, func, select

from service.db.engine import make_engine, reading, writing
from service.db.migrate import alembic_config, migrate
from service.db.tables import CurveChunkRow
from service.store import curves, job_queue
from tests.conftest import both_backends, free_port, start_process, stop_process, wait_healthy
from worker.training.recorder import Chunk

JOBS = sa.table(
    "jobs",
    *(sa.column(c) for c in ("pk", "id", "status", "device", "created_at", "step", "epoch")),
    *(sa.column(c) for c in ("total_steps", "total_epochs", "cancel_requested", "attempts")),
    sa.column("spec", sa.JSON()),
)
SERIES = sa.table("curve_series", sa.column("id"), sa.column("job_pk"), sa.column("name"))
POINTS = sa.table("curve_points", sa.column("series_id"), sa.column("step"), sa.column("value"))
CHECKPOINTS = sa.table(
    "checkpoints", sa.column("job_pk"), sa.column("step"), sa.column("epoch"), sa.column("state")
)

#: what the old database holds: job -> series -> (steps, values)
Curves = dict[int, dict[str, tuple[list[int], list[float | None]]]]


def _old_curves() -> Curves:
    rng = np.random.default_rng(11)
    long: list[float | None] = rng.normal(size=20_000).tolist()  # 313 chunks: two levels above
    long[7_777] = 1e9  # a spike
    for hole in range(3_000, 3_050):
        long[hole] = None  # not finite, stored as null
    rewound: list[float | None] = rng.normal(size=137).tolist()
    return {
        1: {
            "loss": (list(range(1, 20_001)), long),
            "val_loss": ([100, 200, 300], [0.5, None, 0.25]),
        },
        2: {"loss": ([0, 1, 2], [3.0, 2.0, 1.0])},  # a minimize job, from step 0
        3: {"loss": (list(range(1, 138)), rewound)},  # requeued: back to its checkpoint at 137
        4: {"loss": ([], [])},  # a series with no points yet
    }


def _write_old(engine: Engine, old: Curves) -> None:
    with writing(engine) as conn:
        for pk, series in old.items():
            status = "queued" if pk == 3 else "succeeded"
            conn.execute(JOBS.insert().values(**_job(pk, status)))
            for name, (steps, values) in series.items():
                sid = conn.execute(
                    SERIES.insert().values(job_pk=pk, name=name).returning(SERIES.c.id)
                ).scalar_one()
                if steps:
                    conn.execute(
                        POINTS.insert(),
                        [
                            {"series_id": sid, "step": s, "value": v}
                            for s, v in zip(steps, values, strict=True)
                        ],
                    )
        if 3 in old:
            conn.execute(CHECKPOINTS.insert().values(job_pk=3, step=137, epoch=1, state=b"x"))


def _job(pk: int, status: str) -> dict[str, Any]:
    counts = dict.fromkeys(("step", "epoch", "total_steps", "total_epochs", "attempts"), 0)
    return {
        "pk": pk,
        "id": f"job{pk}",
        "status": status,
        "device": "cpu",
        "created_at": datetime.now(UTC).replace(tzinfo=None),
        "cancel_requested": False,
        "spec": {"device": "cpu"},
        **counts,
        "step": 137 if pk == 3 else 0,
    }


@pytest.fixture
def old_engine(db_url: str) -> Iterator[Engine]:
    """A database at revision 0006 (points as rows)."""
    engine = make_engine(db_url)
    cfg = alembic_config()
    with writing(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    yield engine
    engine.dispose()


def _read(engine: Engine, pk: int, **window: Any) -> dict[str, tuple[list[int], list[Any]]]:
    with reading(engine) as conn:
        return curves.read(conn, job_pk=pk, names=None, **window)


@both_backends
def test_old_points_read_back_the_same_from_chunks(old_engine: Engine) -> None:
    old = _old_curves()
    _write_old(old_engine, old)
    migrate(old_engine)
    for pk, series in old.items():
        assert _read(old_engine, pk) == series
        for window in ({"points": 100}, {"start": 7_000, "end": 9_000, "points": 9}):
            thinned = _read(old_engine, pk, **window)
            for name, (steps, values) in series.items():
                inside = [
                    (s, v)
                    for s, v in zip(steps, values, strict=True)
                    if window.get("start", -1) <= s <= window.get("end", 10**9)
                ]
                points = window["points"]
                expected = curves.thin([s for s, _ in inside], [v for _, v in inside], points)
                assert thinned[name] == expected
    assert 1e9 in _read(old_engine, 1, points=10)["loss"][1]
    with reading(old_engine) as conn:
        levels = conn.execute(
            select(CurveChunkRow.level, func.count()).group_by(CurveChunkRow.level)
        ).all()
        assert dict(levels) == {0: 313 + 1 + 1 + 3, 1: 19, 2: 1}
        assert "curve_points" not in sa.inspect(conn).get_table_names()


@both_backends
def test_a_job_rewound_before_the_migration_appends_after_its_checkpoint(
    old_engine: Engine,
) -> None:
    old = _old_curves()
    _write_old(old_engine, old)
    migrate(old_engine)
    claimed = job_queue.claim_next(old_engine, worker_id="new", lease_seconds=30, has_gpu=False)
    assert claimed is not None and claimed.pk == 3
    chunk = Chunk(step=400, epoch=3)
    rest = [float(s) for s in range(138, 401)]
    for step, value in zip(range(138, 401), rest, strict=True):
        chunk.add("loss", step, value)
    assert curves.record(old_engine, job_pk=3, worker_id="new", chunk=chunk, tails={})
    steps, values = old[3]["loss"]
    assert _read(old_engine, 3) == {"loss": ([*steps, *range(138, 401)], [*values, *rest])}


def test_descent_up_migrates_an_old_database_as_it_starts(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(db_url)
    cfg = alembic_config()
    with writing(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    old = _old_curves()
    _write_old(engine, {1: old[1]})
    engine.dispose()
    port, log = free_port(), tmp_path / "up.log"
    proc = start_process(
        ["up", "--port", str(port), "--workers", "1", "--database-url", db_url], log, {}
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)
        answer = httpx.get(f"{url}/jobs/job1/curves", params={"names": "val_loss"}, timeout=30)
        assert answer.json()["series"]["val_loss"] == {
            "steps": [100, 200, 300],
            "values": [0.5, None, 0.25],
        }
        whole = httpx.get(f"{url}/jobs/job1/curves", params={"names": "loss"}, timeout=30)
        assert whole.json()["series"]["loss"]["values"] == old[1]["loss"][1]
    finally:
        stop_process(proc)
