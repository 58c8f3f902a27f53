"""What a new user sees first: `descent up` says when a worker is ready, `/health` counts them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, stop_process

pytestmark = pytest.mark.e2e


def workers(http: Any) -> int:
    return http.get("/health").json()["workers"]  # type: ignore[no-any-return]


def test_a_worker_process_is_counted_from_ready_until_it_stops(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, {})
    try:
        assert workers(cluster.http) == 0
        worker = cluster.worker()  # once it has logged that it is ready
        assert workers(cluster.http) == 1
        assert stop_process(worker) == 0
        assert workers(cluster.http) == 0
    finally:
        cluster.close()


def test_up_says_when_the_first_worker_is_ready(start_service: Any) -> None:
    service = start_service(workers=1)
    deadline = time.monotonic() + 60
    while "Descent is ready" not in service.log.read_text():
        assert time.monotonic() < deadline, service.logs()
        time.sleep(0.05)
    assert workers(service.http) == 1
    log = service.log.read_text()
    assert f"Descent is ready: {service.url} (1 worker(s) ready)" in log
    # it says what it waits for first: the API, then (most often) the worker
    assert log.index("waiting for the API...") < log.index("Descent is ready")
