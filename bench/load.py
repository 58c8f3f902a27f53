"""The API under load: hundreds of concurrent curve polls while two workers train.

The pollers run in a second process (bench/load_client.py). Each alternates the whole curve
thinned to its chart's width and the tail after the last step it has: half the polls read a
whole thinned curve. Each whole curve is asked at a width (1,000 to 1,999 points) no other
poller asks at the same time and unlike the poller's last, so none is served from the
answers the API keeps by ETag. The reference is one poller alone, asking the same back to
back, on the same service in the same state, just before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from bench.report import Row
from bench.service import running_service

#: the digits MLP for longer than the test runs (it is cancelled at the end)
TRAINING: dict[str, Any] = {
    "model": {"type": "mlp", "hidden": [128], "activation": "relu"},
    "data": {"type": "digits"},
    "optimizer": {"type": "adam", "lr": 0.001},
    "batch_size": 64,
    "epochs": 5000,
    "device": "cpu",
}
#: every this many polls a poller asks the whole thinned curve (tails between)
WHOLE_EVERY = 2
#: the target (issue 11): the pollers' p99 latency, with no errors
P99_SECONDS = 0.3


def client_argv(
    port: int,
    jobs: list[str],
    pollers: int,
    interval: float,
    seconds: float,
    whole_every: int = 0,
    own_widths: bool = False,
) -> list[str]:
    """The command line of bench/load_client.py."""
    argv = [sys.executable, "-m", "bench.load_client", "--port", str(port)]
    argv += ["--jobs", ",".join(jobs), "--pollers", str(pollers)]
    argv += ["--whole-every", str(whole_every)] + (["--own-widths"] if own_widths else [])
    return argv + ["--interval", str(interval), "--seconds", str(seconds)]


def _client(
    port: int, jobs: list[str], pollers: int, interval: float, seconds: float
) -> dict[str, float]:
    argv = client_argv(
        port, jobs, pollers, interval, seconds, whole_every=WHOLE_EVERY, own_widths=True
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def start_training(client: httpx.Client, count: int) -> list[str]:
    ids = [client.post("/jobs", json={**TRAINING, "seed": s}).json()["id"] for s in range(count)]
    while any(client.get(f"/jobs/{i}").json()["status"] == "queued" for i in ids):
        time.sleep(0.1)
    return ids


def measure(pollers: int, seconds: float) -> dict[str, dict[str, float]]:
    """One poller back to back, then `pollers` once a second each, while two jobs train."""
    with running_service(workers=2) as client:
        jobs = start_training(client, 2)
        port = client.base_url.port
        assert port is not None
        out = {
            "one": _client(port, jobs, 1, 0.0, seconds / 3),
            "many": _client(port, jobs, pollers, 1.0, seconds),
        }
        if any(client.get(f"/jobs/{i}").json()["status"] != "running" for i in jobs):
            raise RuntimeError("a training job ended before the load test did")
        for job_id in jobs:
            client.post(f"/jobs/{job_id}/cancel")
    return out


def rows(quick: bool) -> Iterator[Row]:
    pollers, seconds = (50, 3.0) if quick else (300, 15.0)
    m = measure(pollers, seconds)
    many, one = m["many"], m["one"]

    def figure(r: dict[str, float], who: str) -> str:
        return (
            f"{r['per_s']:,.0f} req/s, p50 {r['p50_s'] * 1000:.1f} ms, "
            f"p99 {r['p99_s'] * 1000:.1f} ms; of the {r['whole_requests']:,.0f} whole thinned "
            f"curves p50 {r['whole_p50_s'] * 1000:.1f} ms, p99 {r['whole_p99_s'] * 1000:.1f} ms "
            f"({who}; {r['errors']:.0f} errors{_kinds(r)})"
        )

    yield Row(
        f"6. API under load: curve polls for {seconds:.0f} s while 2 workers train the digits "
        "MLP; each poller alternates the whole curve thinned to a width of its own (1,000 to "
        "1,999 points, none asked by two polls at once) and the tail after its last step",
        figure(many, f"{pollers} pollers, each once a second"),
        figure(one, "1 poller, back to back"),
        f"{many['p50_s'] / one['p50_s']:.1f} (p50 latency)",
        f"p99 < {P99_SECONDS * 1000:.0f} ms, no errors",
        many["p99_s"] < P99_SECONDS and many["errors"] == 0,
    )


def _kinds(result: dict[str, Any]) -> str:
    kinds = result.get("error_kinds") or {}
    return ": " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()) if kinds else ""
