"""The API and a worker on one machine: a digits job's speed under 200 watchers, both ways.

"before" is the old settings (`DESCENT_TORCH_THREADS=2`, torch's own default on 2 cores,
`DESCENT_WORKER_NICE=0`, pollers without `If-None-Match`), "after" the defaults (pollers
with `If-None-Match`). In each, one worker trains the digits MLP of bench/load.py: its steps
per second alone, then under the pollers of bench/load_client.py, each once a second. The
job's progress is read from the database file, not through the API the pollers load.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.load import TRAINING, client_argv
from bench.report import Row
from bench.service import running_service
from service.db.engine import make_engine
from service.store import job_queue

#: name -> (the service's DESCENT_* settings, whether the pollers send If-None-Match)
MODES: dict[str, tuple[dict[str, str], bool]] = {
    "before": ({"DESCENT_TORCH_THREADS": "2", "DESCENT_WORKER_NICE": "0"}, False),
    "after": ({}, True),
}
#: seconds the job trains before it is timed (torch's first steps, the first epoch)
WARM_UP_SECONDS = 3.0
#: seconds the pollers run before the job is timed under them (their starts are spread
#: over their first second)
RAMP_SECONDS = 2.0
#: the target: the share of its speed alone the job keeps, and the pollers' p99
KEEPS, P99_SECONDS = 0.5, 0.3


class Progress:
    """A job's step as the worker last recorded it, read from the database itself."""

    def __init__(self, database_url: str, job_id: str) -> None:
        self.engine = make_engine(database_url)
        self.job_id = job_id

    def steps_per_s(self, seconds: float) -> float:
        first, started = self._step(), time.monotonic()
        time.sleep(seconds)
        return (self._step() - first) / (time.monotonic() - started)

    def _step(self) -> int:
        return job_queue.get(self.engine, job_id=self.job_id, owner=None).progress.step

    def close(self) -> None:
        self.engine.dispose()


def _start_job(client: httpx.Client) -> str:
    job_id: str = client.post("/jobs", json=TRAINING).json()["id"]
    while client.get(f"/jobs/{job_id}").json()["status"] == "queued":
        time.sleep(0.1)
    return job_id


def measure(mode: str, pollers: int, seconds: float, alone_seconds: float) -> dict[str, Any]:
    """The job's steps/s alone and under `pollers`, and what the pollers saw."""
    settings, etag = MODES[mode]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'shared.db'}"
        with running_service(workers=1, database_url=url, settings=settings) as client:
            job_id = _start_job(client)
            progress = Progress(url, job_id)
            time.sleep(WARM_UP_SECONDS)
            alone = progress.steps_per_s(alone_seconds)
            port = client.base_url.port
            assert port is not None
            argv = client_argv(port, [job_id], pollers, 1.0, seconds)
            load = subprocess.Popen(
                [*argv, "--etag"] if etag else argv, stdout=subprocess.PIPE, text=True
            )
            time.sleep(RAMP_SECONDS)
            loaded = progress.steps_per_s(seconds - RAMP_SECONDS - 1.0)
            out, _ = load.communicate(timeout=seconds + 120)
            progress.close()
            if load.returncode != 0:
                raise RuntimeError(f"the load client exited with {load.returncode}")
            if client.get(f"/jobs/{job_id}").json()["status"] != "running":
                raise RuntimeError("the training job ended before the test did")
            client.post(f"/jobs/{job_id}/cancel")
    return {"alone": alone, "loaded": loaded, "polls": json.loads(out)}


def rows(quick: bool) -> Iterator[Row]:
    pollers, seconds, alone_seconds = (50, 5.0, 2.0) if quick else (200, 20.0, 8.0)
    for mode, (settings, etag) in MODES.items():
        m = measure(mode, pollers, seconds, alone_seconds)
        polls, ratio = m["polls"], m["loaded"] / m["alone"]
        how = ", ".join(f"{k}={v}" for k, v in settings.items()) or "the defaults"
        met = ratio >= KEEPS and polls["p99_s"] < P99_SECONDS and polls["errors"] == 0
        yield Row(
            f"7. API and worker sharing the machine, {mode} ({how}; pollers "
            f"{'with' if etag else 'without'} If-None-Match): the digits MLP job under "
            f"{pollers} pollers, each once a second, for {seconds:.0f} s",
            f"{m['loaded']:,.0f} steps/s under the pollers; they saw {polls['per_s']:,.0f} "
            f"answers/s ({polls['not_modified']} 304s), p50 {polls['p50_s'] * 1000:.1f} ms, "
            f"p99 {polls['p99_s'] * 1000:.1f} ms, {polls['errors']} errors{_kinds(polls)}",
            f"{m['alone']:,.0f} steps/s alone",
            f"{ratio:.2f}",
            f">= {KEEPS} of alone, p99 < {P99_SECONDS * 1000:.0f} ms, no errors",
            met,
        )


def _kinds(polls: dict[str, Any]) -> str:
    kinds = polls.get("error_kinds") or {}
    return " (" + ", ".join(f"{n} {kind}" for kind, n in kinds.items()) + ")" if kinds else ""
