"""The load test's client, run as its own process: many pollers following running jobs' curves.

Each poller follows one job as a dashboard would: the whole curve thinned to 1,000 points
first, then `GET /jobs/{id}/curves?after=S` with the last step it has, once every
`--interval` seconds (0: back to back), until `--seconds` or the request budget is spent.
With `--whole-every N` every Nth poll asks the whole thinned curve again (a chart redrawn
whole, a dashboard opened again); with `--own-widths` each whole curve is asked at a width
(1,000 to 1,999 points) that no other poller asks at the same time and that differs from the
poller's last, so the answers the API keeps by ETag serve no poll another's read. With
`--etag` each poll sends the `ETag` of its last answer as `If-None-Match`, and a 304 counts
as an answer with nothing new. It talks to 127.0.0.1 only, and prints one JSON line:
requests, errors, seconds, req/s and latency percentiles, all polls' and those of the whole
curves apart.

Each poller keeps one HTTP/1.1 connection, spoken on asyncio's streams: httpx's pool spent
about 18 ms of CPU per request with 200 connections, which made this process, not the
service, the bottleneck of a 2-core machine.

    python -m bench.load_client --port 8000 --jobs ID1,ID2 --pollers 300 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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
    #: the latencies of the polls of a whole thinned curve
    whole_latencies: list[float] = field(default_factory=list)
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


#: the chart widths the pollers ask for, with --own-widths: WIDTHS[0] to WIDTHS[1] - 1 points
WIDTHS = (1000, 2000)


@dataclass
class Dashboard:
    """What a poller asks for: the whole curve thinned to its chart's width, or the tail.

    With `own_widths`, poller `index` of `pollers` asks its k-th whole curve at width
    1000 + (index + k * pollers) mod 1000: no two pollers ask the same at once, and none asks
    what it asked last, so none is answered from the answers the API keeps by ETag (a
    poller back to back would otherwise be, until the job's next flush).
    """

    index: int = 0
    pollers: int = 1
    #: every this many polls the whole thinned curve, tails with `after` between; 0: only
    #: the first poll
    whole_every: int = 0
    own_widths: bool = False
    #: whole curves asked so far
    wholes: int = 0

    def params(self, poll: int, after: int | None) -> dict[str, int]:
        whole = after is None or (self.whole_every > 0 and poll % self.whole_every == 0)
        if not whole:
            return {"after": after if after is not None else 0}
        self.wholes += 1
        return {"points": self.width(self.wholes - 1)}

    def width(self, k: int) -> int:
        if not self.own_widths:
            return WIDTHS[0]
        span = WIDTHS[1] - WIDTHS[0]
        return WIDTHS[0] + (self.index + k * self.pollers) % span


async def follow(
    port: int, job_id: str, interval: float, tally: Tally, etag: bool, dashboard: Dashboard
) -> None:
    await asyncio.sleep(random.uniform(0, interval))  # dashboards do not all open at once
    connection = Connection(port)
    after: int | None = None
    headers: dict[str, str] = {}
    poll = 0
    while time.perf_counter() < tally.deadline and tally.budget > 0:
        tally.budget -= 1
        started = time.perf_counter()
        params = dashboard.params(poll, after)
        poll += 1
        target = f"/jobs/{job_id}/curves?{urlencode(params)}"
        try:
            answer = await asyncio.wait_for(connection.get(target, headers), TIMEOUT_SECONDS)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            connection.close()
            tally.errors[type(exc).__name__] += 1
        else:
            took = time.perf_counter() - started
            if answer.status == 304:
                tally.latencies.append(took)
                tally.not_modified += 1
            elif answer.status != 200:
                tally.errors[str(answer.status)] += 1
            else:
                tally.latencies.append(took)
                if "points" in params:
                    tally.whole_latencies.append(took)
                steps = orjson.loads(answer.body)["series"].get("loss", {}).get("steps")
                after = steps[-1] if steps else after
                if etag:
                    headers = {"If-None-Match": answer.headers["etag"]}
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
    connection.close()


async def run(
    port: int,
    jobs: list[str],
    pollers: int,
    interval: float,
    seconds: float,
    etag: bool = False,
    whole_every: int = 0,
    own_widths: bool = False,
) -> dict[str, Any]:
    started = time.perf_counter()
    tally = Tally(deadline=started + seconds)

    def dashboard(i: int) -> Dashboard:
        return Dashboard(i, pollers, whole_every=whole_every, own_widths=own_widths)

    await asyncio.gather(
        *(
            follow(port, jobs[i % len(jobs)], interval, tally, etag, dashboard(i))
            for i in range(pollers)
        )
    )
    elapsed = time.perf_counter() - started
    return {
        "requests": len(tally.latencies),
        "whole_requests": len(tally.whole_latencies),
        "not_modified": tally.not_modified,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "seconds": elapsed,
        "per_s": len(tally.latencies) / elapsed,
        **_percentiles("", tally.latencies),
        **_percentiles("whole_", tally.whole_latencies),
    }


def _percentiles(prefix: str, latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {f"{prefix}p50_s": math.nan, f"{prefix}p99_s": math.nan}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {f"{prefix}p50_s": cuts[49], f"{prefix}p99_s": cuts[98]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jobs", required=True, help="comma-separated job ids")
    parser.add_argument("--pollers", type=int, default=300)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--etag", action="store_true", help="poll with If-None-Match")
    parser.add_argument(
        "--whole-every", type=int, default=0, help="every Nth poll the whole thinned curve"
    )
    parser.add_argument("--own-widths", action="store_true", help="poller i asks 1,000 + i points")
    args = parser.parse_args()
    jobs = args.jobs.split(",")
    result = asyncio.run(
        run(
            args.port,
            jobs,
            args.pollers,
            args.interval,
            args.seconds,
            etag=args.etag,
            whole_every=args.whole_every,
            own_widths=args.own_widths,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
