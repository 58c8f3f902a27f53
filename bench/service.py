"""Start `descent up` (or the API alone) on a free port over a fresh SQLite file."""

from __future__ import annotations

import os
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_service(
    workers: int = 1, database_url: str | None = None, settings: dict[str, str] | None = None
) -> Iterator[httpx.Client]:
    """`descent up` with that many workers, or `descent api` alone for `workers=0`.

    `settings` are `DESCENT_*` variables for it; none of the caller's own reach it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        argv = [sys.executable, "-m", "service.cli", "up" if workers else "api"]
        argv += ["--port", str(port), "--database-url", url]
        argv += ["--workers", str(workers)] if workers else []
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESCENT_")}
        env.update(settings or {})
        log = Path(tmp) / "service.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        try:
            _wait_healthy(client, proc, log)
            yield client
        finally:
            client.close()
            proc.terminate()
            proc.wait(timeout=30)


def _wait_healthy(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the service exited before it was healthy:\n{tail}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the service never became healthy")


def run_job(client: httpx.Client, spec: dict[str, Any]) -> dict[str, Any]:
    """Submit, wait for the end; fails loudly unless it succeeded."""
    job = client.post("/jobs", json=spec).json()
    while (job := client.get(f"/jobs/{job['id']}").json())["status"] in ("queued", "running"):
        time.sleep(0.25)  # the job's own timestamps are what count, not when this sees them
    if job["status"] != "succeeded":
        raise RuntimeError(f"benchmark job {job['id']} ended {job['status']}: {job['error']}")
    return job


def job_seconds(job: dict[str, Any]) -> float:
    """Seconds from claim to finish, by the job's own timestamps."""
    start = datetime.fromisoformat(job["started_at"])
    end = datetime.fromisoformat(job["finished_at"])
    return (end - start).total_seconds()
