"""A sweep over a real `descent up`: sgd and adam, each with the whole set and batches of 16,
on a small linear problem; every run trains, its curve comes back, the runs rank by final loss,
the picture draws, and `descent sweep FILE --follow` prints the ranking."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TERMINAL, Service

pytestmark = pytest.mark.e2e

SGD = {"type": "sgd", "lr": 0.1}
ADAM = {"type": "adam", "lr": 0.1}
#: y = 2x + noise on [-1, 1], 64 rows, all of them for training
BASE = {
    "model": {"type": "linear"},
    "data": {"type": "linear", "n_samples": 64, "weights": [2.0], "x_range": [-1, 1]},
    "optimizer": SGD,
    "batch_size": 16,
    "epochs": 5,
    "validation_split": 0,
    "device": "cpu",
}
BODY = {
    "name": "sgd vs adam, whole set vs batches of 16",
    "base": BASE,
    "grid": {"optimizer": [SGD, ADAM], "batch_size": [None, 16]},
}
#: optimizer steps of each run: 5 epochs of 1 step, or of 64 / 16 = 4 steps
STEPS = [5, 20, 5, 20]


def wait_sweep(service: Service, sweep_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep: dict[str, Any] = service.http.get(f"/sweeps/{sweep_id}").json()
        if all(run["status"] in TERMINAL for run in sweep["runs"]):
            return sweep
        time.sleep(0.05)
    raise AssertionError(f"sweep {sweep_id} unfinished after {timeout}s:\n{service.logs()}")


def descent(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """`python -m service.cli ARGS` against `url`, with no other DESCENT_* variable."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DESCENT_")}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env={**clean, "DESCENT_URL": url},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_sweep_end_to_end(start_service: Any, tmp_path: Path) -> None:
    service: Service = start_service(workers=1)
    created = service.http.post("/sweeps", json=BODY)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    job_ids = [job["id"] for job in created.json()["jobs"]]
    assert [job["overrides"] for job in created.json()["jobs"]] == [
        {"optimizer": SGD, "batch_size": None},
        {"optimizer": SGD, "batch_size": 16},
        {"optimizer": ADAM, "batch_size": None},
        {"optimizer": ADAM, "batch_size": 16},
    ]

    sweep = wait_sweep(service, sweep_id)
    assert [run["status"] for run in sweep["runs"]] == ["succeeded"] * 4, service.logs()
    assert sweep["counts"]["succeeded"] == 4 and sweep["n_jobs"] == 4
    assert [run["result"]["steps"] for run in sweep["runs"]] == STEPS

    # each run's whole loss curve, the last point its final loss
    curves = service.http.get(f"/sweeps/{sweep_id}/curves", params={"name": "loss"}).json()
    assert curves["sweep_id"] == sweep_id and curves["name"] == "loss"
    assert [run["job_id"] for run in curves["runs"]] == job_ids
    for run, result, steps in zip(
        curves["runs"], [r["result"] for r in sweep["runs"]], STEPS, strict=True
    ):
        assert run["steps"] == list(range(1, steps + 1))
        assert all(math.isfinite(v) for v in run["values"])
        assert run["values"][-1] == pytest.approx(result["final_loss"], rel=1e-6)
        assert run["values"][-1] < run["values"][0]  # it learnt
    thinned = service.http.get(f"/sweeps/{sweep_id}/curves", params={"points": 4}).json()
    for run, steps in zip(thinned["runs"], STEPS, strict=True):
        assert len(run["steps"]) <= 4 and run["steps"][0] == 1 and run["steps"][-1] == steps

    # best final loss first, on request
    ranked = service.http.get(f"/sweeps/{sweep_id}", params={"order": "final_loss"}).json()
    losses = [run["result"]["final_loss"] for run in ranked["runs"]]
    assert losses == sorted(losses) and sorted(r["job_id"] for r in ranked["runs"]) == sorted(
        job_ids
    )

    plot = service.http.get(f"/sweeps/{sweep_id}/plot.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert plot.content.startswith(b"\x89PNG\r\n\x1a\n")

    listed = service.http.get("/jobs").json()["items"]
    assert {job["id"]: job["sweep_id"] for job in listed} == dict.fromkeys(job_ids, sweep_id)
    assert [s["id"] for s in service.http.get("/sweeps").json()["items"]] == [sweep_id]

    # the command line: the same sweep again, followed, then ranked as the service ranks it
    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(json.dumps(BODY))
    followed = descent("sweep", str(sweep_file), "--follow", url=service.url)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    first = followed.stdout.splitlines()[0]
    assert first.startswith("sweep ") and first.endswith(": 4 jobs")
    again = first.split()[1].rstrip(":")
    ranking = followed.stdout.split("final loss")[-1]
    expected = service.http.get(f"/sweeps/{again}", params={"order": "final_loss"}).json()
    positions = [ranking.index(run["job_id"]) for run in expected["runs"]]
    assert positions == sorted(positions), followed.stdout
    assert ranking.count("succeeded") == 4
    assert ranking.count('optimizer={"type": "adam", "lr": 0.1}') == 2
