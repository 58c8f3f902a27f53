"""Workers die for real (SIGKILL) or are stopped (SIGTERM); no job is lost or run twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TERMINAL, Cluster

pytestmark = pytest.mark.e2e

#: ~20,000 steps of batch 16 over the digits: ~10 s on one torch thread, with a shuffled order,
#: so a second worker started once it is under way finds it still running
JOB = {
    "model": {"type": "mlp", "hidden": [32]},
    "data": {"type": "digits"},
    "optimizer": {"type": "adam", "lr": 0.001},
    "schedule": {"type": "exponential", "gamma": 0.95},
    "batch_size": 16,
    "epochs": 220,
    "device": "cpu",
}
FAST_LEASES = {
    "DESCENT_LEASE_SECONDS": "2",
    "DESCENT_HEARTBEAT_SECONDS": "0.1",
    "DESCENT_CHECKPOINT_SECONDS": "0.5",
}


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    made: list[Cluster] = []

    def make(env: dict[str, str] | None = None) -> Cluster:
        made.append(Cluster(tmp_path, {**FAST_LEASES, **(env or {})}))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The job run without a crash, by a worker like the tests' own, once for the module."""
    c = Cluster(tmp_path_factory.mktemp("reference"), FAST_LEASES)
    try:
        c.worker()
        job = c.http.post("/jobs", json=JOB).json()
        done = c.wait_until(job["id"], lambda j: j["status"] in TERMINAL)
        params = c.http.get(f"/jobs/{job['id']}/parameters").json()["parameters"]
        return done, c.curve(job["id"]), params
    finally:
        c.close()


def _assert_same_run(c: Cluster, job_id: str, reference: tuple[Any, Any, Any]) -> None:
    done, curve, params = reference
    job = c.job(job_id)
    assert job["status"] == "succeeded", job
    series = c.curve(job_id)
    total = job["progress"]["total_steps"]
    assert series["loss"]["steps"] == list(range(1, total + 1)), "every step exactly once"
    assert series == curve
    assert c.http.get(f"/jobs/{job_id}/parameters").json()["parameters"] == params
    for key in ("final_loss", "best_loss", "steps", "metrics"):
        assert job["result"][key] == done["result"][key], key


def test_sigkill_the_worker_another_resumes_from_the_checkpoint(
    cluster: Any, reference: Any
) -> None:
    c: Cluster = cluster()
    first = c.worker()
    job = c.http.post("/jobs", json=JOB).json()
    c.wait_until(job["id"], lambda j: j["progress"]["step"] > 1000)
    c.worker()  # a survivor, idle; the dead one's lease must expire first
    first.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    first.wait()
    c.wait_until(job["id"], lambda j: "resumes from its checkpoint" in c.log.read_text(), 30)
    back = time.monotonic() - killed
    print(f"SIGKILL to running again: {back:.2f} s (lease 2 s)")
    c.wait_until(job["id"], lambda j: j["status"] in TERMINAL)
    _assert_same_run(c, job["id"], reference)
    assert c.log.read_text().count(f"job {job['id']} claimed") == 2


def test_sigterm_hands_the_job_over_at_once(cluster: Any, reference: Any) -> None:
    # a long lease: the hand-over must not wait for it
    c: Cluster = cluster({"DESCENT_LEASE_SECONDS": "60"})
    first = c.worker()
    job = c.http.post("/jobs", json=JOB).json()
    c.wait_until(job["id"], lambda j: j["progress"]["step"] > 1000)
    c.worker()
    asked = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0, "the worker exits within a few seconds"
    exited = time.monotonic() - asked
    c.wait_until(job["id"], lambda j: "resumes from its checkpoint" in c.log.read_text(), 10)
    print(
        f"SIGTERM hand-over: worker exited in {exited:.2f} s, job running again in "
        f"{time.monotonic() - asked:.2f} s"
    )
    c.wait_until(job["id"], lambda j: j["status"] in TERMINAL)
    _assert_same_run(c, job["id"], reference)


def test_cancel_reaches_a_worker_through_the_database(cluster: Any) -> None:
    c: Cluster = cluster()
    c.worker()
    job = c.http.post("/jobs", json=JOB).json()
    c.wait_until(job["id"], lambda j: j["progress"]["step"] > 100)
    asked = time.monotonic()
    c.http.post(f"/jobs/{job['id']}/cancel")
    done = c.wait_until(job["id"], lambda j: j["status"] in TERMINAL, 10)
    print(f"cancel of a running job took {time.monotonic() - asked:.2f} s")
    assert done["status"] == "cancelled"


def test_wall_clock_limit_fails_the_job_as_timeout(cluster: Any) -> None:
    c: Cluster = cluster({"DESCENT_MAX_JOB_SECONDS": "1"})
    c.worker()
    job = c.http.post("/jobs", json=JOB).json()
    done = c.wait_until(job["id"], lambda j: j["status"] in TERMINAL, 30)
    assert done["status"] == "failed" and done["error"]["type"] == "timeout"
    assert "time limit of 1 s" in done["error"]["message"]
    assert c.curve(job["id"])["loss"]["steps"], "points before the limit are kept"
