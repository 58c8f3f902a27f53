"""Issue 9: a worker survives what it runs, and a cancel reaches inside a long step.

Real processes: an API and workers started apart (so a worker's budget can be smaller than
the one the API admits jobs by), a real allocation failure under the worker's address-space
cap, and a real cancel over HTTP while a step of many seconds runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TERMINAL, Cluster, fit_spec

pytestmark = pytest.mark.e2e

#: ~320 MB of float64 features to make: past a 256 MiB worker, well inside an 8 GiB one
LARGE_DATA = fit_spec(
    data={"type": "linear", "n_samples": 400_000, "n_features": 100},
    batch_size=1024,
    epochs=1,
)
#: one full-batch step of an MLP of 2048-unit layers over 10,000 rows: ~10^12 multiply-adds,
#: many seconds on a CPU core, each layer's pass about one
LONG_STEP = {
    "model": {"type": "mlp", "hidden": [2048, 2048, 2048]},
    "data": {"type": "linear", "n_samples": 10_000, "n_features": 256},
    "optimizer": {"type": "sgd", "lr": 1e-6},
    "batch_size": None,
    "validation_split": 0,
    "epochs": 3,
    "device": "cpu",
}


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    made: list[Cluster] = []

    def make(env: dict[str, str] | None = None) -> Cluster:
        made.append(Cluster(tmp_path, env or {}))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_a_worker_that_cannot_hold_a_job_fails_it_as_resources(cluster: Any) -> None:
    c: Cluster = cluster({"DESCENT_WORKER_MEMORY": "8GiB"})  # the API admits it
    worker = c.worker({"DESCENT_WORKER_MEMORY": "256MiB"})  # this worker cannot hold it
    large = c.http.post("/jobs", json=LARGE_DATA)
    assert large.status_code == 201, large.text
    job = c.wait_until(large.json()["id"], lambda j: j["status"] in TERMINAL)
    assert job["status"] == "failed", job
    assert job["error"]["type"] == "resources"
    message = job["error"]["message"]
    assert message.startswith("this worker cannot hold the job: the job's estimated peak")
    assert "(DESCENT_WORKER_MEMORY, 268435456 bytes)" in message
    # the same worker process takes the next job and trains it
    small = c.http.post("/jobs", json=fit_spec()).json()
    done = c.wait_until(small["id"], lambda j: j["status"] in TERMINAL)
    assert done["status"] == "succeeded", done
    assert worker.poll() is None
    assert c.log.read_text().count(" ready (device") == 1  # never restarted


#: a worker whose settings admit the large job but whose address space is capped at 256 MiB
#: past what it holds: the allocation itself fails inside the job
_CAPPED_WORKER = """
from service.config import Settings
from worker.memory import cap_address_space
from worker.claims import Worker

worker = Worker(Settings(), device="cpu")
cap_address_space(256 << 20)
print("ran", worker.run_one(), worker.run_one(), flush=True)
"""


def test_an_allocation_that_fails_ends_the_job_and_the_worker_goes_on(
    tmp_path: Path, client: Any, settings: Any
) -> None:
    # 800 MB of features to make, past the cap's 256 MiB and its headroom
    data = {"type": "linear", "n_samples": 1_000_000, "n_features": 100}
    large = client.post("/jobs", json={**LARGE_DATA, "data": data}).json()
    small = client.post("/jobs", json=fit_spec()).json()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DESCENT_")},
        "DESCENT_DATABASE_URL": settings.database_url,
        "DESCENT_WORKER_MEMORY": "8GiB",
    }
    done = subprocess.run(
        [sys.executable, "-c", _CAPPED_WORKER],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ran True True" in done.stdout
    failed = client.get(f"/jobs/{large['id']}").json()
    assert (failed["status"], failed["error"]["type"]) == ("failed", "resources"), failed
    message = failed["error"]["message"]
    assert "more memory than its worker has" in message
    assert "allocation of" in message or "memory ran out" in message
    assert "estimated peak is" in message
    assert client.get(f"/jobs/{small['id']}").json()["status"] == "succeeded"


def test_a_cancel_ends_a_long_step_within_about_a_second(cluster: Any) -> None:
    c: Cluster = cluster()
    c.worker()
    job = c.http.post("/jobs", json=LONG_STEP).json()
    c.wait_until(job["id"], lambda j: j["status"] == "running")
    time.sleep(2.0)  # the data and the model are made; the first step is under way
    asked = time.monotonic()
    assert c.http.post(f"/jobs/{job['id']}/cancel").status_code == 200
    ended = c.wait_until(job["id"], lambda j: j["status"] in TERMINAL, timeout=60)
    waited = time.monotonic() - asked
    print(f"cancel inside a long step: cancelled {waited:.2f} s after the request")
    assert ended["status"] == "cancelled", ended
    assert ended["error"]["type"] == "cancelled"
    # stopped inside its first step, which alone takes several times this long
    assert ended["progress"]["step"] == 0
    assert waited < 5.0
