"""Fixtures: a fresh SQLite file per test, an app over it, and real `descent` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.config import Settings, configure
from service.db.engine import make_engine
from service.db.migrate import migrate
from service.main import create_app

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'descent.db'}"


@pytest.fixture
def settings(db_url: str) -> Iterator[Settings]:
    settings = Settings(database_url=db_url)
    configure(settings)
    yield settings
    configure(Settings())


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def fit_spec(**overrides: Any) -> dict[str, Any]:
    """A small, fast fit spec; keyword overrides replace top-level fields."""
    spec: dict[str, Any] = {
        "model": {"type": "linear"},
        "data": {"type": "linear", "n_samples": 64, "weights": [2.0]},
        "optimizer": {"type": "sgd", "lr": 0.01},
        "batch_size": 16,
        "epochs": 3,
        "device": "cpu",
    }
    spec.update(overrides)
    return spec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A running `descent` process tree and an HTTP client to it."""

    url: str
    db_url: str
    proc: subprocess.Popen[bytes]
    http: httpx.Client
    log: Path

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/jobs", json=spec)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait(
        self, job_id: str, statuses: set[str] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/jobs/{job_id}").json()
            if job["status"] in statuses:
                return job  # type: ignore[no-any-return]
            time.sleep(0.02)
        raise AssertionError(
            f"job {job_id} still {job['status']} after {timeout}s; log:\n{self.logs()}"
        )

    def logs(self) -> str:
        return self.log.read_text()[-5000:]


def start_process(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`python -m service.cli ARGS` with no DESCENT_* variable but those given, in log's folder."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DESCENT_")}
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**clean, **(env or {})},
        cwd=log.parent,
    )


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"process exited with {proc.returncode}:\n{log.read_text()[-5000:]}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became healthy:\n{log.read_text()[-5000:]}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Any]:
    """Call with `workers=N` to start `descent up` on a free port over a fresh SQLite file."""
    started: list[Service] = []

    def start(workers: int = 1, env: dict[str, str] | None = None) -> Service:
        port = free_port()
        db_url = f"sqlite:///{tmp_path / f'up-{port}.db'}"
        log = tmp_path / f"up-{port}.log"
        proc = start_process(
            ["up", "--port", str(port), "--workers", str(workers), "--database-url", db_url],
            log,
            env,
        )
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)
        service = Service(url, db_url, proc, httpx.Client(base_url=url, timeout=30), log)
        started.append(service)
        return service

    yield start
    for service in started:
        service.http.close()
        stop_process(service.proc)
