"""`descent up`, `descent api` and `descent worker` as real processes, driven over HTTP.

The tests of what the database does (claims, cancels, hand-backs) run on SQLite and on
PostgreSQL; tests/e2e/test_postgres.py has PostgreSQL's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import (
    LONG,
    Service,
    both_backends,
    fit_spec,
    free_port,
    post_to_running,
    read_jobs,
    start_process,
    stop_process,
    wait_healthy,
)

pytestmark = pytest.mark.e2e


def _pids_with(database: str) -> list[int]:
    """Descent's processes on `database` (PostgreSQL's own show its name too: left out)."""
    pattern = f"service.cli .*{database}"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


@both_backends
def test_job_goes_queued_running_succeeded(start_service: Any) -> None:
    service: Service = start_service(workers=1)
    # ~14,000 steps, a second or two: several flushes (every 0.2 s) for the polls to see
    job = service.submit({**LONG, "epochs": 10, "name": "watch me"})
    assert job["status"] == "queued"
    running = service.wait(job["id"], {"running", "succeeded"})
    assert running["status"] == "running"
    steps_seen = []
    while (current := service.http.get(f"/jobs/{job['id']}").json())["status"] == "running":
        steps_seen.append(current["progress"]["step"])
        time.sleep(0.05)
    assert current["status"] == "succeeded", current
    assert len(set(steps_seen)) >= 2, "progress should advance while the job runs"
    assert current["progress"]["step"] == current["progress"]["total_steps"] == 10 * 1438
    loss = service.http.get(f"/jobs/{job['id']}/curves", params={"names": "loss"}).json()
    assert loss["series"]["loss"]["steps"] == list(range(1, 10 * 1438 + 1))


@both_backends
def test_two_workers_never_run_the_same_job(start_service: Any) -> None:
    service: Service = start_service(workers=2)
    # long enough (~0.1 s each) that one worker cannot drain the queue alone
    ids = [service.submit(fit_spec(seed=i, epochs=60))["id"] for i in range(30)]
    for job_id in ids:
        assert service.wait(job_id)["status"] == "succeeded"
    log = service.log.read_text()  # all of it: logs() is the tail
    assert all(log.count(f"job {job_id} claimed") == 1 for job_id in ids), log
    attempts = {job_id: row.attempts for job_id, row in read_jobs(service.db_url).items()}
    assert attempts == dict.fromkeys(ids, 1)
    pids = {line.split()[2] for line in log.splitlines() if " claimed" in line}
    assert len(pids) == 2, "both workers should have taken jobs"


@both_backends
def test_cancel_queued_running_and_finished(start_service: Any) -> None:
    service: Service = start_service(workers=1)
    running = service.submit(LONG)
    service.wait(running["id"], {"running"})
    queued = service.submit(fit_spec())
    assert service.http.post(f"/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"

    time.sleep(0.5)  # let it record some points
    asked = time.monotonic()
    assert service.http.post(f"/jobs/{running['id']}/cancel").status_code == 200
    ended = service.wait(running["id"], timeout=10)
    took = time.monotonic() - asked
    assert ended["status"] == "cancelled" and ended["error"]["type"] == "cancelled"
    assert took < 5, f"a running job should stop within about a second, took {took:.2f}s"
    points = service.http.get(f"/jobs/{running['id']}/curves", params={"names": "loss"}).json()
    assert points["series"]["loss"]["steps"], "points before the cancel are kept"

    finished = service.submit(fit_spec())
    service.wait(finished["id"])
    assert service.http.post(f"/jobs/{finished['id']}/cancel").status_code == 409
    assert service.http.get(f"/jobs/{queued['id']}").json()["status"] == "cancelled"


@both_backends
def test_delete_running_job_stops_it(start_service: Any) -> None:
    service: Service = start_service(workers=1)
    job = service.submit(LONG)
    service.wait(job["id"], {"running"})
    assert service.http.delete(f"/jobs/{job['id']}").status_code == 204
    assert service.http.get(f"/jobs/{job['id']}").status_code == 404
    follow = service.submit(fit_spec())  # the worker is free again
    assert service.wait(follow["id"], timeout=15)["status"] == "succeeded"


def test_divergence_and_bad_specs(start_service: Any) -> None:
    service: Service = start_service(workers=1)
    job = service.submit(fit_spec(optimizer={"type": "sgd", "lr": 50.0}, epochs=100))
    failed = service.wait(job["id"])
    assert failed["status"] == "failed" and failed["error"]["type"] == "diverged"
    assert "at step" in failed["error"]["message"]
    bad = service.http.post("/jobs", json=fit_spec(batch_size=0))
    assert bad.status_code == 422 and "batch_size" in bad.text
    assert len(service.http.get("/jobs").json()["items"]) == 1


@both_backends
def test_sigterm_stops_everything(
    tmp_path: Path, db_url: str, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    db = make_url(db_url).database  # the file or database name: on every process's command line
    log = tmp_path / "up.log"
    proc = start_process(
        ["up", "--port", str(port), "--workers", "2", "--database-url", db_url], log
    )
    request.addfinalizer(lambda: stop_process(proc))  # no strays if an assertion fails
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, log)
    job = httpx.post(f"{url}/jobs", json=LONG).json()
    while httpx.get(f"{url}/jobs/{job['id']}").json()["status"] != "running":
        time.sleep(0.05)
    assert len(_pids_with(str(db))) == 4  # up, the API, two workers
    assert stop_process(proc, timeout=20) == 0
    time.sleep(0.5)
    assert _pids_with(str(db)) == [], "no orphan processes"
    # the running job was handed back to the queue, not left running
    assert read_jobs(db_url)[job["id"]].status == "queued"


def test_ctrl_c_stops_the_process_group(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "ctrlc.db"
    argv = [
        sys.executable,
        "-m",
        "service.cli",
        "up",
        "--port",
        str(port),
        "--database-url",
        f"sqlite:///{db}",
    ]
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_healthy(f"http://127.0.0.1:{port}", proc, tmp_path / "up.log")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert proc.wait(timeout=20) == 0
    time.sleep(0.5)
    assert _pids_with(str(db)) == []


def test_api_and_worker_started_separately(tmp_path: Path) -> None:
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'split.db'}"
    log = tmp_path / "split.log"
    # the variable names the database; for the worker a flag overrides a wrong variable
    api = start_process(["api", "--port", str(port)], log, {"DESCENT_DATABASE_URL": db_url})
    worker = start_process(
        ["worker", "--database-url", db_url],
        log,
        {"DESCENT_DATABASE_URL": "sqlite:////nonexistent/x.db"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, api, log)
        with httpx.Client(base_url=url) as http:
            service = Service(url, db_url, api, http, log)
            job = service.submit(fit_spec())
            assert service.wait(job["id"])["status"] == "succeeded"
    finally:
        assert stop_process(worker) == 0
        assert stop_process(api) == 0


def test_idle_worker_picks_up_quickly(start_service: Any) -> None:
    """Not a timing assertion: prints the figure, and checks it is not a one-second poll."""
    service: Service = start_service(workers=1)
    waits = post_to_running(service)
    median = waits[len(waits) // 2]
    print(f"POST to running, median of {len(waits)}: {median * 1000:.1f} ms")
    assert median < 0.5
