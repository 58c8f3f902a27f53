"""Issue 9: fuzzing with costs. Specs inside every documented limit are refused or fit.

Hypothesis draws specs at the edges (wide layers, many classes, many rows and features,
extreme numbers) and posts them to an API whose workers may use 512 MiB each: each is a 201
or a 422 that names a field. Then the largest of those accepted are trained by real `descent
worker` processes under the same budget, and each worker's peak resident memory while it
trained stays within it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from service.config import Settings
from service.main import create_app
from service.spec import FitSpec, costs, job_spec_adapter
from tests.conftest import TERMINAL, start_process, stop_process

BUDGET = 512 << 20
#: jobs trained for real: the largest accepted, by estimated peak
RUNS = 3
#: multiply-adds a job run for real may take (~10 s of a CPU core), so the test stays bounded
MAX_WORK = 3 * 10**10

widths = st.one_of(st.integers(1, 64), st.sampled_from([512, 2048, 4096, 8192]))
extreme = st.sampled_from([-1e12, -1.0, 0.0, 1e-300, 1.0, 1e12])


@st.composite
def data_specs(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["linear", "blobs", "digits", "inline"]))
    rows = draw(st.one_of(st.integers(2, 500), st.sampled_from([10**4, 10**5, 10**6])))
    features = draw(st.one_of(st.integers(1, 8), st.sampled_from([100, 1000, 10_000])))
    if kind == "linear":
        return {"type": "linear", "n_samples": rows, "n_features": features}
    if kind == "blobs":
        classes = draw(st.sampled_from([2, 10, 1000, 10_000, 10_001]))
        return {
            "type": "classification",
            "n_samples": rows,
            "n_features": features,
            "n_classes": classes,
        }
    if kind == "digits":
        return {"type": "digits"}
    n = draw(st.integers(2, 20))
    labels = draw(st.booleans())
    y = draw(st.lists(st.integers(0, 20_000) if labels else extreme, min_size=n, max_size=n))
    return {"type": "inline", "x": [[draw(extreme)] for _ in range(n)], "y": y}


@st.composite
def fit_specs(draw: Any) -> dict[str, Any]:
    model = draw(st.sampled_from(["linear", "softmax", "mlp"]))
    spec: dict[str, Any] = {
        "model": {"type": model},
        "data": draw(data_specs()),
        "optimizer": {
            "type": draw(st.sampled_from(["sgd", "adam", "rmsprop"])),
            "lr": draw(st.sampled_from([1e-6, 1e-3, 1.0, 1e6])),
        },
        "batch_size": draw(st.one_of(st.none(), st.sampled_from([1, 64, 4096, 10**6]))),
        "epochs": 1,
        "validation_split": 0.0,
        "dtype": draw(st.sampled_from(["float32", "float64"])),
        "device": "cpu",
    }
    if model == "mlp":
        spec["model"]["hidden"] = draw(st.lists(widths, min_size=1, max_size=4))
    return spec


@pytest.fixture
def budget_client(settings: Settings) -> Any:
    small = settings.model_copy(update={"worker_memory": BUDGET, "max_job_seconds": 120})
    with TestClient(create_app(small)) as client:
        yield client


def test_specs_at_the_limits_are_refused_or_fit_the_worker(
    budget_client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    accepted: list[tuple[int, dict[str, Any]]] = []

    @settings_for_fuzz
    @given(spec=fit_specs())
    def post(spec: dict[str, Any]) -> None:
        response = budget_client.post("/jobs", json=spec)
        assert response.status_code in (201, 422), response.text
        body = response.json()
        if response.status_code == 422:
            for error in body["detail"]:
                assert error["loc"][0] == "body" and error["msg"], error
            return
        parsed = job_spec_adapter.validate_python(body["spec"])
        assert isinstance(parsed, FitSpec)
        cost = costs.fit_cost(parsed)
        assert cost.peak_bytes <= BUDGET
        budget_client.post(f"/jobs/{body['id']}/cancel")  # trained below, if among the largest
        if cost.parameters * parsed.n_train * parsed.epochs * 3 <= MAX_WORK:
            accepted.append((cost.peak_bytes, body["spec"]))

    post()
    largest = sorted(accepted, key=lambda pair: -pair[0])[:RUNS]
    assert len(largest) == RUNS, f"too few accepted specs to run: {len(accepted)}"
    for estimate, spec in largest:
        grew = _peak_growth(budget_client, settings, tmp_path, spec)
        print(f"estimated {estimate / 2**20:.0f} MiB, measured {grew / 2**20:.0f} MiB: {spec}")
        assert grew <= BUDGET, (grew, estimate, spec)


settings_for_fuzz = hypothesis_settings(
    max_examples=100,
    derandomize=True,  # the same specs every run, so CI's answer does not change by chance
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _peak_growth(client: TestClient, settings: Settings, tmp_path: Path, spec: dict) -> int:
    """Bytes a fresh worker's peak resident memory grew by while it trained `spec`."""
    log = tmp_path / f"worker-{time.monotonic_ns()}.log"
    env = {
        "DESCENT_DATABASE_URL": settings.database_url,
        "DESCENT_WORKER_MEMORY": str(BUDGET),
        "DESCENT_MAX_JOB_SECONDS": "120",
    }
    worker = start_process(["worker", "--device", "cpu"], log, env)
    try:
        _wait_ready(worker, log)
        before = _high_water(worker.pid)
        job = client.post("/jobs", json=spec).json()
        deadline = time.monotonic() + 180
        while (status := client.get(f"/jobs/{job['id']}").json())["status"] not in TERMINAL:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        assert status["status"] != "failed" or status["error"]["type"] in ("diverged", "timeout"), (
            status["error"],
            spec,
        )
        return _high_water(worker.pid) - before
    finally:
        stop_process(worker)


def _wait_ready(worker: Any, log: Path) -> None:
    deadline = time.monotonic() + 60
    while " ready (device" not in log.read_text():
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)


def _high_water(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")
