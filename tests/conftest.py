"""Fixtures: a fresh database per test, an app over it, and real `descent` processes.

The database is a SQLite file unless a test names the backend: `@both_backends` runs it on
SQLite and on a fresh PostgreSQL database of the server at `DESCENT_TEST_POSTGRES`. Where no
server answers, the PostgreSQL half fails under CI (`CI=true`) and is skipped, loudly, elsewhere.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from service.config import Settings
from service.db.engine import make_engine
from service.db.migrate import migrate
from service.db.tables import JobRow
from service.main import create_app

TERMINAL = {"succeeded", "failed", "cancelled"}

#: the server PostgreSQL tests create their databases on, and a database to connect to there
POSTGRES_ADMIN_URL = os.environ.get(
    "DESCENT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
#: runs a test that uses `db_url` (or `start_service`) once on each backend
both_backends = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])

_postgres_down: str | None = None  # why the server did not answer, once it did not


def _admin() -> psycopg.Connection:
    """A connection to the PostgreSQL server; fails under CI, else skips, when none answers."""
    global _postgres_down
    if _postgres_down is None:
        try:
            return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            where = make_url(POSTGRES_ADMIN_URL)
            _postgres_down = (
                f"PostgreSQL at {where.host}:{where.port or 5432} did not answer: {exc}"
            )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{_postgres_down} (CI=true, where the PostgreSQL tests must run)")
    pytest.skip(_postgres_down)


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database, dropped (connections and all) afterwards."""
    name = f"descent_t_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with _admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _postgres_down is not None:
        terminalreporter.write_line(
            f"PostgreSQL tests SKIPPED: {_postgres_down}", yellow=True, bold=True
        )


@pytest.fixture
def backend() -> str:
    """`sqlite` unless the test is parametrized (`@both_backends`)."""
    return "sqlite"


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'descent.db'}"
    else:
        with postgres_database() as url:
            yield url


def read_jobs(db_url: str) -> dict[str, Any]:
    """The jobs table as {id: row}, read with SQLAlchemy on either backend."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(JobRow.id, JobRow.status, JobRow.attempts)).all()
    finally:
        engine.dispose()
    return {row.id: row for row in rows}


@pytest.fixture
def settings(db_url: str) -> Iterator[Settings]:
    settings = Settings(database_url=db_url)
    yield settings


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


#: a job long enough to be seen running and to be cancelled: ~72,000 steps of batch size 1
LONG = {
    "model": {"type": "mlp", "hidden": [32]},
    "data": {"type": "digits"},
    "optimizer": {"type": "sgd", "lr": 0.01},
    "batch_size": 1,
    "epochs": 50,
    "device": "cpu",
}


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


def post_to_running(service: Service, jobs: int = 15) -> list[float]:
    """Seconds from each POST to its job running, one job at a time, sorted."""
    waits = []
    for i in range(jobs):
        sent = time.monotonic()
        job = service.submit(fit_spec(seed=i, epochs=1))
        while service.http.get(f"/jobs/{job['id']}").json()["status"] == "queued":
            pass
        waits.append(time.monotonic() - sent)
        service.wait(job["id"])
    return sorted(waits)


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


class Cluster:
    """An API and workers started one by one, so a single worker can be killed."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.db_url = tmp, f"sqlite:///{tmp / 'cluster.db'}"
        self.env = {"DESCENT_DATABASE_URL": self.db_url, **env}
        self.log = tmp / "cluster.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = start_process(["api", "--port", str(port)], self.log, self.env)
        wait_healthy(self.url, self.api, self.log)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.workers: list[Any] = []

    def worker(self, env: dict[str, str] | None = None) -> Any:
        """Start a worker (with `env` on top of the cluster's) and wait until it is ready."""
        ready = self.log.read_text().count(" ready (device")
        proc = start_process(["worker", "--device", "cpu"], self.log, {**self.env, **(env or {})})
        self.workers.append(proc)
        deadline = time.monotonic() + 60
        while self.log.read_text().count(" ready (device") == ready:
            assert time.monotonic() < deadline and proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        return proc

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"/jobs/{job_id}").json()  # type: ignore[no-any-return]

    def wait_until(self, job_id: str, ok: Any, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if ok(job):
                return job
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} never got there: {job}\n{self.log.read_text()[-4000:]}")

    def curve(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"/jobs/{job_id}/curves").json()["series"]  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()
        for proc in [*self.workers, self.api]:
            if proc.poll() is None:
                stop_process(proc)


@pytest.fixture
def start_service(tmp_path: Path, backend: str) -> Iterator[Any]:
    """Call with `workers=N` to start `descent up` on a free port over a fresh database."""
    started: list[Service] = []
    databases = ExitStack()

    def start(workers: int = 1, env: dict[str, str] | None = None) -> Service:
        port = free_port()
        if backend == "sqlite":
            db_url = f"sqlite:///{tmp_path / f'up-{port}.db'}"
        else:
            db_url = databases.enter_context(postgres_database())
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

    with databases:  # dropped once the processes using them have stopped
        yield start
        for service in started:
            service.http.close()
            stop_process(service.proc)
