"""The reference for the metric store: an MLflow tracking server on SQLite, over its REST API.

MLflow is installed only for the benchmark, in its own environment (bench/.mlflow-venv, made
on first use), so none of its dependencies reach Descent's. A worker of MLflow's logs points
with `runs/log-batch`, at most 1000 metrics a call; a reader asks `metrics/get-history`, or
`get-history-bulk-interval` for a curve sampled to N points (what the MLflow UI plots).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.service import free_port

VENV = Path(__file__).parent / ".mlflow-venv"
#: the version measured; pinned so that runs on different days compare
MLFLOW = "mlflow==3.17.2"
#: MLflow's limit on metrics per `runs/log-batch` call
BATCH = 1000
#: seconds the install and the server's start may take
INSTALL_SECONDS, START_SECONDS = 900, 120


class Unavailable(Exception):
    """MLflow could not be installed or started; the message says why."""


def install() -> Path:
    """The `mlflow` command, installed into its own environment the first time."""
    exe, installed = VENV / "bin" / "mlflow", VENV / ".installed"
    if installed.exists() and installed.read_text().strip() == MLFLOW:
        return exe
    print(f"installing {MLFLOW} into {VENV} (once; about a minute)", flush=True)
    for argv in (
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "pip"), "install", "-q", MLFLOW],
    ):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"`{' '.join(argv[-3:])}` failed: {exc}") from exc
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
            raise Unavailable((errors or done.stderr.splitlines() or ["no output"])[-1])
    installed.write_text(MLFLOW + "\n")  # a first run cut short installs again
    return exe


@contextmanager
def server(folder: Path) -> Iterator[httpx.Client]:
    """`mlflow server` on a fresh SQLite file, one worker process like Descent's API."""
    port = free_port()
    argv = [str(install()), "server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--workers", "1"]
    argv += ["--default-artifact-root", str(folder / "artifacts")]
    log = folder / "mlflow.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
    try:
        _wait_healthy(client, proc, log)
        yield client
    finally:
        client.close()
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
        proc.wait(timeout=30)


def _wait_healthy(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log.read_text(errors="replace").splitlines() or ["no output"]
            raise Unavailable(f"mlflow server exited: {lines[-1]}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise Unavailable(f"mlflow server did not answer within {START_SECONDS} s")


def _api(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, f"/api/2.0/mlflow/{path}", **kwargs)
    response.raise_for_status()
    return response.json()


def new_run(client: httpx.Client) -> str:
    experiment = _api(client, "POST", "experiments/create", json={"name": "bench"})
    run = _api(client, "POST", "runs/create", json={"experiment_id": experiment["experiment_id"]})
    return str(run["run"]["info"]["run_id"])


def log_curve(client: httpx.Client, run_id: str, steps: int) -> float:
    """Seconds to log `loss` at steps 1..steps, BATCH points a call; the batches made first."""
    batches = [
        [
            {"key": "loss", "value": 1.0 / s, "timestamp": 0, "step": s}
            for s in range(start, min(start + BATCH, steps + 1))
        ]
        for start in range(1, steps + 1, BATCH)
    ]
    started = time.perf_counter()
    for metrics in batches:
        _api(client, "POST", "runs/log-batch", json={"run_id": run_id, "metrics": metrics})
    return time.perf_counter() - started


def history(client: httpx.Client, run_id: str) -> int:
    """The whole curve, page after page; the number of points."""
    params: dict[str, str] = {"run_id": run_id, "metric_key": "loss"}
    count = 0
    while True:
        page = _api(client, "GET", "metrics/get-history", params=params)
        count += len(page.get("metrics", []))
        if not page.get("next_page_token"):
            return count
        params["page_token"] = str(page["next_page_token"])


def sampled(
    client: httpx.Client, run_id: str, points: int, window: tuple[int, int] | None = None
) -> int:
    """The curve sampled to `points`, as the MLflow UI asks for it; only steps in
    `window` (first, last) where one is given, as the UI asks for a zoom."""
    params = {"run_ids": run_id, "metric_key": "loss", "max_results": str(points)}
    if window is not None:
        params.update(start_step=str(window[0]), end_step=str(window[1]))
    response = client.get("/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", params=params)
    response.raise_for_status()
    return len(response.json().get("metrics", []))


def measure(
    folder: Path, steps: int, runs: int, points: int, zoom: tuple[int, int]
) -> dict[str, float]:
    """Points logged per second (one curve), and median seconds to read it: whole, sampled to
    `points`, and a window of zoom[0] steps in its middle sampled to zoom[1]."""
    window_steps, window_points = zoom
    first = max(1, (steps - window_steps) // 2)
    window = (first, first + window_steps - 1)
    with server(folder) as client:
        run_id = new_run(client)
        seconds = log_curve(client, run_id, steps)
        out = {"points_per_s": steps / seconds}
        for key, read in (
            ("read_s", lambda: history(client, run_id)),
            ("thin_s", lambda: sampled(client, run_id, points)),
            ("zoom_s", lambda: sampled(client, run_id, window_points, window)),
        ):
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                read()
                times.append(time.perf_counter() - started)
            out[key] = statistics.median(times)
        if history(client, run_id) != steps:
            raise RuntimeError("MLflow returned a curve of the wrong length")
    return out
