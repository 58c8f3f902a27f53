"""Start `descent up` on a free port over a fresh SQLite file, for a benchmark."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_service(workers: int = 1, database_url: str | None = None) -> Iterator[httpx.Client]:
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        argv = [sys.executable, "-m", "service.cli", "up", "--port", str(port)]
        argv += ["--workers", str(workers), "--database-url", url]
        log = (Path(tmp) / "up.log").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        try:
            _wait_healthy(client, proc)
            yield client
        finally:
            client.close()
            proc.terminate()
            proc.wait(timeout=30)


def _wait_healthy(client: httpx.Client, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError("descent up exited before it was healthy")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("descent up never became healthy")


def run_job(client: httpx.Client, spec: dict[str, Any]) -> dict[str, Any]:
    """Submit, wait for the end; fails loudly unless it succeeded."""
    job = client.post("/jobs", json=spec).json()
    while (job := client.get(f"/jobs/{job['id']}").json())["status"] in ("queued", "running"):
        time.sleep(0.05)
    if job["status"] != "succeeded":
        raise RuntimeError(f"benchmark job {job['id']} ended {job['status']}: {job['error']}")
    return job  # type: ignore[no-any-return]


def job_seconds(job: dict[str, Any]) -> float:
    """Seconds from claim to finish, by the job's own timestamps."""
    start = datetime.fromisoformat(job["started_at"])
    end = datetime.fromisoformat(job["finished_at"])
    return (end - start).total_seconds()
