"""The chunked curve store (service/store/chunks.py): what a read returns, whole, windowed or
thinned, is what the points recorded give, and a thinned read keeps exactly what the in-memory
`thin` (the reference, and the store's read before chunks) keeps of the same window.

Chunks and the fan-out of the summaries are made small here, so a few hundred points already
make a pyramid of several levels with open chunks, closed ones and missing summaries.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update

from service.db.engine import reading
from service.db.tables import CurveChunkRow, JobRow
from service.store import chunks, curves, job_queue
from tests.conftest import both_backends
from worker.training.recorder import Chunk


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(chunks, "CHUNK_POINTS", 4)
    monkeypatch.setattr(chunks, "FANOUT", 3)
    monkeypatch.setattr(chunks, "LEVELS", 4)
    monkeypatch.setattr(chunks, "WHOLE_FACTOR", 1)  # summaries even for short windows
    yield


def _job(engine: Engine, worker: str = "w") -> int:
    job_queue.create(engine, spec={"device": "cpu"}, owner=None, total_steps=1, total_epochs=1)
    claimed = job_queue.claim_next(engine, worker_id=worker, lease_seconds=30, has_gpu=False)
    assert claimed is not None
    return claimed.pk


def _record(
    engine: Engine,
    job_pk: int,
    steps: list[int],
    values: list[float | None],
    flushes: list[int],
    *,
    worker: str = "w",
    checkpoint_at: int | None = None,
) -> None:
    """The points written as a worker writes them: in flushes of the given sizes."""
    tails: dict[str, curves.SeriesTail] = {}
    at = 0
    for size in [*flushes, len(steps)]:
        part = slice(at, min(at + max(size, 1), len(steps)))
        if part.start >= part.stop:
            break
        chunk = Chunk(step=steps[part.stop - 1], epoch=0)
        for s, v in zip(steps[part], values[part], strict=True):
            chunk.add("loss", s, v)
        if checkpoint_at is not None and part.start <= checkpoint_at < part.stop:
            chunk.checkpoint = b"state"
            chunk.step = steps[part.stop - 1]
        assert curves.record(engine, job_pk=job_pk, worker_id=worker, chunk=chunk, tails=tails)
        at = part.stop


def _read(
    engine: Engine, job_pk: int, **window: int | None
) -> tuple[list[int], list[float | None]]:
    with reading(engine) as conn:
        return curves.read(conn, job_pk=job_pk, names=["loss"], **window).get("loss", ([], []))


def _expected(
    steps: list[int],
    values: list[float | None],
    start: int | None,
    end: int | None,
    points: int | None,
) -> tuple[list[int], list[float | None]]:
    inside = [
        (s, v)
        for s, v in zip(steps, values, strict=True)
        if (start is None or s >= start) and (end is None or s <= end)
    ]
    window_steps, window_values = [s for s, _ in inside], [v for _, v in inside]
    if points is None:
        return window_steps, window_values
    return curves.thin(window_steps, window_values, points)


# few distinct values, so ties are common; spikes; None (not finite) in runs
VALUES = st.one_of(
    st.none(),
    st.sampled_from([-1.0, 0.0, 2.5, 1e12, -1e12]),
    st.floats(-1e6, 1e6, allow_nan=False),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(VALUES, min_size=1, max_size=700),
    gaps=st.booleans(),
    flushes=st.lists(st.integers(1, 40), max_size=30),
    points=st.one_of(st.none(), st.integers(2, 60)),
    window=st.tuples(
        st.one_of(st.none(), st.integers(-5, 800)), st.one_of(st.none(), st.integers(-5, 800))
    ),
)
def test_reads_keep_what_thin_keeps_of_the_same_window(
    engine: Engine,
    values: list[float | None],
    gaps: bool,
    flushes: list[int],
    points: int | None,
    window: tuple[int | None, int | None],
) -> None:
    steps = [3 * i + 1 for i in range(len(values))] if gaps else list(range(len(values)))
    start, end = window
    if start is not None and end is not None and end < start:
        start, end = end, start
    job_pk = _job(engine)
    _record(engine, job_pk, steps, values, flushes)
    got = _read(engine, job_pk, start=start, end=end, points=points)
    assert got == _expected(steps, values, start, end, points)


def test_a_long_curve_reads_through_several_levels_of_summaries(engine: Engine) -> None:
    rng = np.random.default_rng(7)
    n = 5000  # 1,250 chunks of 4: summaries of 3, 9, 27 and 81 chunks
    values: list[float | None] = rng.normal(size=n).tolist()
    for spike in (1234, 3001, 4999):
        values[spike] = 50.0
    for hole in range(2000, 2100):
        values[hole] = None
    steps = list(range(1, n + 1))
    job_pk = _job(engine)
    _record(engine, job_pk, steps, values, [997, 1, 3000])
    with reading(engine) as conn:
        levels = dict(
            conn.execute(
                select(CurveChunkRow.level, func.count()).group_by(CurveChunkRow.level)
            ).all()
        )
    assert levels == {0: 1250, 1: 416, 2: 138, 3: 46, 4: 15}
    for start, end, points in [(None, None, 100), (1, 5000, 7), (1500, 4500, 40), (2001, 2099, 5)]:
        assert _read(engine, job_pk, start=start, end=end, points=points) == _expected(
            steps, values, start, end, points
        )
    assert 50.0 in _read(engine, job_pk, points=10)[1]


def test_after_and_a_window_combine(engine: Engine) -> None:
    steps, values = list(range(100)), [float(s % 7) for s in range(100)]
    job_pk = _job(engine)
    _record(engine, job_pk, steps, values, [10, 10])
    assert _read(engine, job_pk, after=50, start=30, end=60) == (steps[51:61], values[51:61])
    assert _read(engine, job_pk, after=50, start=70) == (steps[70:], values[70:])
    assert _read(engine, job_pk, start=200) == ([], [])


@both_backends
def test_a_rewind_drops_exactly_the_points_after_the_checkpoint(engine: Engine) -> None:
    """A job whose worker died after a checkpoint at step 137 runs again on another worker:
    the store keeps steps up to 137, the new attempt records the rest, and every read then
    equals that of a curve recorded in one go."""
    rng = np.random.default_rng(3)
    n = 400
    first: list[float | None] = rng.normal(size=n).tolist()
    job_pk = _job(engine, "dead")
    _record(
        engine, job_pk, list(range(1, n + 1)), first, [50, 87, 13], worker="dead", checkpoint_at=136
    )
    with engine.begin() as conn:
        conn.execute(update(JobRow).values(lease_expires_at=JobRow.created_at))
    assert job_queue.requeue_expired(engine) == 1
    steps, values = _read(engine, job_pk)
    assert steps == list(range(1, 138)) and values == first[:137]
    again = job_queue.claim_next(engine, worker_id="alive", lease_seconds=30, has_gpu=False)
    assert again is not None and again.pk == job_pk
    second: list[float | None] = rng.normal(size=n - 137).tolist()
    _record(engine, job_pk, list(range(138, n + 1)), second, [5, 100], worker="alive")
    whole = first[:137] + second
    all_steps = list(range(1, n + 1))
    for start, end, points in [(None, None, None), (None, None, 30), (100, 300, 9), (130, 140, 4)]:
        assert _read(engine, job_pk, start=start, end=end, points=points) == _expected(
            all_steps, whole, start, end, points
        )


@both_backends
def test_non_finite_values_are_stored_as_such_and_read_as_null(engine: Engine) -> None:
    job_pk = _job(engine)
    values: list[float | None] = [1.0, float("nan"), float("inf"), None, -2.0] * 5
    _record(engine, job_pk, list(range(25)), values, [3])
    expected = [v if v is not None and np.isfinite(v) else None for v in values]
    assert _read(engine, job_pk) == (list(range(25)), expected)
    steps, kept = _read(engine, job_pk, points=4)
    assert steps[0] == 0 and steps[-1] == 24 and -2.0 in kept


def test_the_api_zooms_into_a_window_and_refuses_one_that_ends_before_it_starts(
    client: TestClient, engine: Engine
) -> None:
    job_pk = _job(engine)
    values: list[float | None] = [float(s % 10) for s in range(300)]
    values[150] = 99.0
    _record(engine, job_pk, list(range(300)), values, [64])
    with reading(engine) as conn:
        job_id = conn.execute(select(JobRow.id).where(JobRow.pk == job_pk)).scalar_one()
    url = f"/jobs/{job_id}/curves"
    zoomed = client.get(url, params={"start": 100, "end": 200, "points": 6}).json()
    loss = zoomed["series"]["loss"]
    assert (loss["steps"], loss["values"]) == curves.thin(list(range(100, 201)), values[100:201], 6)
    assert 99.0 in loss["values"]
    refused = client.get(url, params={"start": 10, "end": 5})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "end"]
    assert "before start" in refused.json()["detail"][0]["msg"]
