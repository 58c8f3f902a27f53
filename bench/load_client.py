"""The load test's client, run as its own process: many pollers following running jobs' curves.

Each poller follows one job as a dashboard would: the whole curve thinned to 1,000 points
first, then `GET /jobs/{id}/curves?after=S` with the last step it has, once every
`--interval` seconds (0: back to back), until `--seconds` or the request budget is spent.
It talks to 127.0.0.1 only, and prints one JSON line: requests, errors, seconds, req/s and
latency percentiles.

    python -m bench.load_client --port 8000 --jobs ID1,ID2 --pollers 300 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import orjson

#: requests the whole test may make, whatever the time left
MAX_REQUESTS = 100_000


@dataclass
class Tally:
    deadline: float
    budget: int = MAX_REQUESTS
    #: failed requests by kind: the exception's name, or the status code
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


async def follow(client: httpx.AsyncClient, job_id: str, interval: float, tally: Tally) -> None:
    await asyncio.sleep(random.uniform(0, interval))  # dashboards do not all open at once
    params: dict[str, int] = {"points": 1000}
    while time.perf_counter() < tally.deadline and tally.budget > 0:
        tally.budget -= 1
        started = time.perf_counter()
        try:
            response = await client.get(f"/jobs/{job_id}/curves", params=params)
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            tally.errors[str(exc.response.status_code)] += 1
        except httpx.HTTPError as exc:
            tally.errors[type(exc).__name__] += 1
        else:
            tally.latencies.append(time.perf_counter() - started)
            steps = orjson.loads(response.content)["series"].get("loss", {}).get("steps")
            params = {"after": steps[-1] if steps else params.get("after", 0)}
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))


async def run(
    port: int, jobs: list[str], pollers: int, interval: float, seconds: float
) -> dict[str, float]:
    limits = httpx.Limits(max_connections=pollers, max_keepalive_connections=pollers)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        tally = Tally(deadline=started + seconds)
        await asyncio.gather(
            *(follow(client, jobs[i % len(jobs)], interval, tally) for i in range(pollers))
        )
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(tally.latencies, n=100, method="inclusive")
    return {
        "requests": len(tally.latencies),
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "seconds": elapsed,
        "per_s": len(tally.latencies) / elapsed,
        "p50_s": cuts[49],
        "p99_s": cuts[98],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jobs", required=True, help="comma-separated job ids")
    parser.add_argument("--pollers", type=int, default=300)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    jobs = args.jobs.split(",")
    result = asyncio.run(run(args.port, jobs, args.pollers, args.interval, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
