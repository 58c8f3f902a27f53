"""Claiming a sweep's runs together: only queued siblings the caller accepts, each once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert, select

from service.db.engine import writing
from service.db.tables import CheckpointRow, JobRow
from service.spec.sweep import SweepRequest
from service.store import job_queue, sweeps
from tests.conftest import both_backends, fit_spec


def _sweep(engine: Engine, grid: dict[str, list[Any]]) -> list[str]:
    request = SweepRequest.model_validate({"base": fit_spec(), "grid": grid})
    created = sweeps.create(engine, request=request, owner=None, max_jobs=100)
    return [run.id for run in created.jobs]


def _claim(engine: Engine, worker: str) -> job_queue.Claimed:
    claimed = job_queue.claim_next(engine, worker_id=worker, lease_seconds=30, has_gpu=False)
    assert claimed is not None
    return claimed


def _siblings(
    engine: Engine, lead: job_queue.Claimed, worker: str, **kw: Any
) -> list[job_queue.Claimed]:
    options: dict[str, Any] = {"accept": lambda spec: True, "most": 100, **kw}
    return job_queue.claim_siblings(
        engine, lead=lead, worker_id=worker, lease_seconds=30, has_gpu=False, **options
    )


def _statuses(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(JobRow.id, JobRow.status, JobRow.worker_id)).all()
    return {row.id: (row.status, row.worker_id) for row in rows}


@both_backends
def test_siblings_are_claimed_once_by_the_lead_worker(engine: Engine) -> None:
    ids = _sweep(engine, {"optimizer.lr": [0.1, 0.01, 0.001, 0.0001]})
    lead = _claim(engine, "w1")
    assert lead.id == ids[0]
    siblings = _siblings(engine, lead, "w1", most=2)
    assert [s.id for s in siblings] == ids[1:3]
    assert all(s.attempts == 1 and s.checkpoint is None for s in siblings)
    assert [s.spec["optimizer"]["lr"] for s in siblings] == [0.01, 0.001]
    status = _statuses(engine)
    assert [status[i] for i in ids] == [("running", "w1")] * 3 + [("queued", None)]
    # another worker gets the last one, alone; nothing is left for a second group
    other = _claim(engine, "w2")
    assert other.id == ids[3] and _siblings(engine, other, "w2") == []


@both_backends
def test_only_accepted_siblings_of_the_same_sweep(engine: Engine) -> None:
    ids = _sweep(engine, {"batch_size": [8, 16, 8]})
    outsider = job_queue.create(engine, spec=fit_spec(), owner=None, total_steps=1, total_epochs=1)
    lead = _claim(engine, "w")
    taken = _siblings(engine, lead, "w", accept=lambda spec: spec["batch_size"] == 8)
    assert [s.id for s in taken] == [ids[2]]
    status = _statuses(engine)
    assert status[ids[1]] == ("queued", None) and status[outsider.id] == ("queued", None)


@both_backends
def test_a_job_outside_a_sweep_has_no_siblings(engine: Engine) -> None:
    job_queue.create(engine, spec=fit_spec(), owner=None, total_steps=1, total_epochs=1)
    _sweep(engine, {"seed": [1, 2]})
    assert _siblings(engine, _claim(engine, "w"), "w") == []


@both_backends
def test_a_checkpointed_sibling_resumes_alone(engine: Engine) -> None:
    ids = _sweep(engine, {"seed": [1, 2, 3]})
    with writing(engine) as conn:
        pk = conn.execute(select(JobRow.pk).where(JobRow.id == ids[1])).scalar_one()
        conn.execute(insert(CheckpointRow).values(job_pk=pk, step=1, epoch=0, state=b"x"))
    taken = _siblings(engine, _claim(engine, "w"), "w")
    assert [s.id for s in taken] == [ids[2]]
