"""`descent up` with DESCENT_API_TOKENS set, over real HTTP: strangers are refused, a token sees
only its own jobs, and its job trains to the end."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import Service, fit_spec

pytestmark = pytest.mark.e2e


def test_tokens_guard_a_real_service(start_service: Any) -> None:
    service: Service = start_service(workers=1, env={"DESCENT_API_TOKENS": "alpha, beta"})
    alpha = httpx.Client(
        base_url=service.url, timeout=30, headers={"Authorization": "Bearer alpha"}
    )
    beta = httpx.Client(base_url=service.url, timeout=30, headers={"Authorization": "Bearer beta"})
    with alpha, beta:
        refused = service.http.post("/jobs", json=fit_spec())
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert (
            service.http.get("/jobs", headers={"Authorization": "Bearer gamma"}).status_code == 401
        )
        assert service.http.get("/health").status_code == 200

        submitted = alpha.post("/jobs", json=fit_spec(name="alpha's"))
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]
        assert beta.get(f"/jobs/{job_id}").status_code == 404
        assert beta.get(f"/jobs/{job_id}/curves").status_code == 404
        assert beta.post(f"/jobs/{job_id}/cancel").status_code == 404
        assert beta.get("/jobs").json()["items"] == []

        deadline = time.monotonic() + 60
        while (job := alpha.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"job still {job['status']}:\n{service.logs()}"
            time.sleep(0.05)
        assert job["status"] == "succeeded", job
        assert job["progress"]["step"] == job["progress"]["total_steps"] == 12
        loss = alpha.get(f"/jobs/{job_id}/curves", params={"names": "loss"}).json()
        assert loss["series"]["loss"]["steps"] == list(range(1, 13))
        assert beta.get(f"/jobs/{job_id}/parameters").status_code == 404
        assert beta.delete(f"/jobs/{job_id}").status_code == 404
        assert alpha.get(f"/jobs/{job_id}/parameters").json()["step"] == 12
