"""Start `descent up`, the API alone, or the API and workers as processes of their own, on a
free port over a fresh SQLite file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _argv(command: str, database_url: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", command, "--database-url", database_url, *flags]


def _environment(settings: dict[str, str] | None) -> dict[str, str]:
    """The service's environment: `settings`, and none of the caller's own DESCENT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESCENT_")}
    return env | (settings or {})


@contextmanager
def _spawned(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process writing to `log`, stopped (SIGTERM, then waited for) at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def _client(port: int, proc: subprocess.Popen[bytes], log: Path) -> Iterator[httpx.Client]:
    """A client of the API on `port`, once /health answers."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        _wait_healthy(client, proc, log)
        yield client


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
        flags = ["--port", str(port)] + (["--workers", str(workers)] if workers else [])
        argv = _argv("up" if workers else "api", url, *flags)
        log = Path(tmp) / "service.log"
        with (
            _spawned(argv, _environment(settings), log) as proc,
            _client(port, proc, log) as client,
        ):
            yield client


@contextmanager
def api_and_workers(
    workers: int, database_url: str | None = None, settings: dict[str, str] | None = None
) -> Iterator[tuple[httpx.Client, int]]:
    """`descent api` and `descent worker`s as processes of their own (not under `descent up`),
    so that the API's CPU can be read apart: a client of the API, and the API's process id."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        port, env = free_port(), _environment(settings)
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        log = Path(tmp) / "api.log"
        api = stack.enter_context(_spawned(_argv("api", url, "--port", str(port)), env, log))
        client = stack.enter_context(_client(port, api, log))  # the API migrates the file
        share = ["--machine-workers", str(workers)]  # as `descent up --workers N` passes
        for i in range(workers):
            worker_log = Path(tmp) / f"worker-{i}.log"
            stack.enter_context(_spawned(_argv("worker", url, *share), env, worker_log))
        yield client, api.pid


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
