"""The service on PostgreSQL: many workers, wake-up by LISTEN/NOTIFY, connections dropped."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_ADMIN_URL, Service, fit_spec, post_to_running, read_jobs

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("backend", ["postgresql"])]

#: a job that runs for a few seconds: ~7,000 steps of batch size 1
LONG = {
    "model": {"type": "mlp", "hidden": [32]},
    "data": {"type": "digits"},
    "optimizer": {"type": "sgd", "lr": 0.01},
    "batch_size": 1,
    "epochs": 5,
    "device": "cpu",
}
#: how many times connections are dropped while the long job runs
DROPS = 10


def _drop_connections(service: Service) -> int:
    """End every server connection to the service's database, as a restart or a network would."""
    database = make_url(service.db_url).database
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(ended)


def _wait_for_log(service: Service, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + 60
    while service.log.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{service.logs()}"
        time.sleep(0.05)


def _claims(service: Service) -> list[str]:
    return [line for line in service.log.read_text().splitlines() if " claimed" in line]


def test_three_workers_run_each_job_exactly_once(start_service: Any) -> None:
    service: Service = start_service(workers=3)
    _wait_for_log(service, " ready (device", count=3)  # no worker gets a head start
    # long enough (~0.1 s each) that no worker drains the queue alone
    ids = [service.submit(fit_spec(seed=i, epochs=60))["id"] for i in range(60)]
    for job_id in ids:
        assert service.wait(job_id)["status"] == "succeeded"
    rows = read_jobs(service.db_url)
    assert {job_id: row.attempts for job_id, row in rows.items()} == dict.fromkeys(ids, 1)
    claims = _claims(service)
    assert sorted(line.split()[-2] for line in claims) == sorted(ids), service.logs()
    for job_id in ids:
        total = service.http.get(f"/jobs/{job_id}").json()["progress"]["total_steps"]
        curve = service.http.get(f"/jobs/{job_id}/curves", params={"names": "loss"}).json()
        assert curve["series"]["loss"]["steps"] == list(range(1, total + 1)), job_id
    pids = {line.split()[2] for line in claims}
    assert len(pids) == 3, "all three workers should have taken jobs"


def test_idle_worker_wakes_on_notify(start_service: Any) -> None:
    """With the fallback poll pushed out to 30 s, only a notification wakes the worker fast."""
    service: Service = start_service(workers=1, env={"DESCENT_NOTIFY_FALLBACK_SECONDS": "30"})
    service.wait(service.submit(fit_spec())["id"])  # the worker is up, and idle
    waits = post_to_running(service)
    median = waits[len(waits) // 2]
    print(
        f"postgresql, LISTEN/NOTIFY: POST to running, median of 15: {median * 1000:.1f} ms"
        f" (slowest {waits[-1] * 1000:.1f} ms)"
    )
    assert median < 0.5 and waits[-1] < 5, waits


def test_service_survives_dropped_connections(start_service: Any) -> None:
    service: Service = start_service(workers=1)
    service.submit(fit_spec())
    _wait_for_log(service, "listening for new jobs")  # idle once before the long job
    job = service.submit(LONG)
    service.wait(job["id"], {"running"})
    while service.http.get(f"/jobs/{job['id']}").json()["progress"]["step"] == 0:
        time.sleep(0.05)
    # mid-job, a few times over: the API's, the recorder's and the listening connections end
    assert _drop_connections(service) >= 2
    for _ in range(DROPS - 1):
        time.sleep(0.1)
        _drop_connections(service)
    done = service.wait(job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    total = done["progress"]["total_steps"]
    curve = service.http.get(f"/jobs/{job['id']}/curves", params={"names": "loss"}).json()
    assert curve["series"]["loss"]["steps"] == list(range(1, total + 1))

    # idle: the worker waits on its listening connection when it is ended
    time.sleep(0.5)
    assert _drop_connections(service) >= 1
    time.sleep(0.5)
    after = service.submit(fit_spec())
    assert service.wait(after["id"], timeout=30)["status"] == "succeeded"
    assert "listening for new jobs again" in service.log.read_text(), service.logs()
