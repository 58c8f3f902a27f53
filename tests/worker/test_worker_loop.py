"""The worker's loop outlives a database that fails under it."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

import worker.claims
from service.config import Settings
from service.store import job_queue
from worker.claims import Worker


def test_a_database_error_costs_one_turn_of_the_loop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loop = Worker(settings, device="cpu")
    looks = 0

    def any_queued(*_args: object, **_kwargs: object) -> bool:
        nonlocal looks
        looks += 1
        if looks == 1:
            dropped = Exception("server closed the connection unexpectedly")
            raise OperationalError("SELECT 1", {}, dropped)
        loop.stop.set()
        return False

    monkeypatch.setattr(job_queue, "any_queued", any_queued)
    monkeypatch.setattr(worker.claims, "DB_RETRY_SECONDS", 0.01)
    loop.run()
    assert looks == 2
    assert "database error" in caplog.text
