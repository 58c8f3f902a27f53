"""Load on SQLite: clients polling curves and submitting jobs while two workers train."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import TERMINAL, Service, fit_spec

pytestmark = pytest.mark.e2e

#: bounds on the load: it stops by itself
SUBMITTERS, JOBS_EACH, POLLERS, SECONDS = 3, 15, 6, 60.0


def test_pollers_and_submitters_while_two_workers_train(start_service: Any) -> None:
    service: Service = start_service(workers=2)
    ids: list[str] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def note(response: httpx.Response) -> None:
        with lock:
            statuses[response.status_code] += 1
            if response.status_code >= 400:
                errors.append(f"{response.request.url}: {response.status_code} {response.text}")

    def submit(seed: int) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            for i in range(JOBS_EACH):
                spec = fit_spec(seed=seed * 100 + i, batch_size=1, epochs=20)
                response = http.post("/jobs", json=spec)
                note(response)
                if response.status_code == 201:
                    with lock:
                        ids.append(response.json()["id"])

    def poll() -> None:
        after: dict[str, int] = {}
        with httpx.Client(base_url=service.url, timeout=30) as http:
            while not done.is_set():
                with lock:
                    current = list(ids)
                note(http.get("/jobs", params={"limit": 20}))
                for job_id in current[-5:]:
                    params = {"names": "loss", "after": after.get(job_id, 0)}
                    response = http.get(f"/jobs/{job_id}/curves", params=params)
                    note(response)
                    steps = response.json()["series"].get("loss", {}).get("steps", [])
                    if steps:
                        assert steps[0] == after.get(job_id, 0) + 1, "no step twice, none torn"
                        after[job_id] = steps[-1]

    pollers = [threading.Thread(target=poll) for _ in range(POLLERS)]
    submitters = [threading.Thread(target=submit, args=(s,)) for s in range(SUBMITTERS)]
    started = time.monotonic()
    for t in pollers + submitters:
        t.start()
    for t in submitters:
        t.join()
    try:
        for job_id in list(ids):
            remaining = SECONDS - (time.monotonic() - started)
            assert (
                service.wait(job_id, TERMINAL, timeout=max(remaining, 1))["status"] == "succeeded"
            )
    finally:
        done.set()
        for t in pollers:
            t.join()
    took = time.monotonic() - started
    print(f"load: {sum(statuses.values())} requests in {took:.1f} s, {dict(statuses)}")
    assert errors == []
    assert len(ids) == SUBMITTERS * JOBS_EACH
    log = service.log.read_text()
    assert "database is locked" not in log and "Traceback" not in log
