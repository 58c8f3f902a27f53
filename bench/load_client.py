"""The load test's client, run as its own process: many pollers following running jobs' curves.

Each poller follows one job as a dashboard would: the whole curve thinned to 1,000 points
first, then `GET /jobs/{id}/curves?after=S` with the last step it has, once every
`--interval` seconds (0: back to back), until `--seconds` or the request budget is spent.
With `--etag` each poll sends the `ETag` of its last answer as `If-None-Match`, and a 304
counts as an answer with nothing new. It talks to 127.0.0.1 only, and prints one JSON line:
requests, errors, seconds, req/s and latency percentiles.

Each poller keeps one HTTP/1.1 connection, spoken on asyncio's streams: httpx's pool spent
about 18 ms of CPU per request with 200 connections, which made this process, not the
service, the bottleneck of a 2-core machine.

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
from typing import Any
from urllib.parse import urlencode

import orjson

#: requests the whole test may make, whatever the time left
MAX_REQUESTS = 100_000
#: seconds a request may take before it counts as an error
TIMEOUT_SECONDS = 60.0
#: the only host this client talks to
HOST = "127.0.0.1"


@dataclass
class Tally:
    deadline: float
    budget: int = MAX_REQUESTS
    #: failed requests by kind: the exception's name, or the status code
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    #: answers 304: nothing new since the poller's last answer
    not_modified: int = 0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1, opened again when the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, target: str, headers: dict[str, str]) -> Answer:
        reused = self.streams is not None
        try:
            return await self._exchange(target, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close()
            if not reused:
                raise
        # the server closed the idle connection as this request left: as a browser does, once
        # more on a fresh one
        return await self._exchange(target, headers)

    async def _exchange(self, target: str, headers: dict[str, str]) -> Answer:
        if self.streams is None:
            self.streams = await asyncio.open_connection(HOST, self.port)
        reader, writer = self.streams
        lines = [f"GET {target} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
        got = {name.strip().lower(): value.strip() for name, value in fields.items()}
        if "chunked" in got.get("transfer-encoding", ""):
            raise ValueError("a chunked answer: this client reads Content-Length bodies only")
        body = await reader.readexactly(int(got.get("content-length", "0")))
        if got.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, got, body)

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def follow(port: int, job_id: str, interval: float, tally: Tally, etag: bool) -> None:
    await asyncio.sleep(random.uniform(0, interval))  # dashboards do not all open at once
    connection = Connection(port)
    params: dict[str, int] = {"points": 1000}
    headers: dict[str, str] = {}
    while time.perf_counter() < tally.deadline and tally.budget > 0:
        tally.budget -= 1
        started = time.perf_counter()
        target = f"/jobs/{job_id}/curves?{urlencode(params)}"
        try:
            answer = await asyncio.wait_for(connection.get(target, headers), TIMEOUT_SECONDS)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            connection.close()
            tally.errors[type(exc).__name__] += 1
        else:
            if answer.status == 304:
                tally.latencies.append(time.perf_counter() - started)
                tally.not_modified += 1
            elif answer.status != 200:
                tally.errors[str(answer.status)] += 1
            else:
                tally.latencies.append(time.perf_counter() - started)
                steps = orjson.loads(answer.body)["series"].get("loss", {}).get("steps")
                params = {"after": steps[-1] if steps else params.get("after", 0)}
                if etag:
                    headers = {"If-None-Match": answer.headers["etag"]}
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
    connection.close()


async def run(
    port: int, jobs: list[str], pollers: int, interval: float, seconds: float, etag: bool = False
) -> dict[str, Any]:
    started = time.perf_counter()
    tally = Tally(deadline=started + seconds)
    await asyncio.gather(
        *(follow(port, jobs[i % len(jobs)], interval, tally, etag) for i in range(pollers))
    )
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(tally.latencies, n=100, method="inclusive")
    return {
        "requests": len(tally.latencies),
        "not_modified": tally.not_modified,
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
    parser.add_argument("--etag", action="store_true", help="poll with If-None-Match")
    args = parser.parse_args()
    jobs = args.jobs.split(",")
    result = asyncio.run(
        run(args.port, jobs, args.pollers, args.interval, args.seconds, etag=args.etag)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
