"""Live events fanned out: the API's CPU while 100 clients follow one running job's events.

`descent api` and one `descent worker` run as processes of their own, so that the API's CPU
(utime + stime in /proc/<pid>/stat over the window, over the window's wall time) is its own.
The worker trains the digits MLP of bench/load.py. The clients are opened in this process,
each a connection on asyncio's streams (httpx would spend more of this process's CPU than
the API spends on them), each from the step the job had reached (`Last-Event-ID`, as the
dashboard opens its stream after reading the thinned curve), and they count the `points`
events they receive. The reference is the API's CPU with one client, on the same job, just
before.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.load import start_training
from bench.report import Row
from bench.service import api_and_workers

#: the only host the clients talk to
HOST = "127.0.0.1"
#: what each `points` event carries first, counted in the bytes a client receives
POINTS_EVENT = b"event: points"
#: the target (issue 11): the API's CPU with 100 clients, in cores
MOST_CORES = 0.5
#: seconds the job trains before the first window (torch's first steps, the first epoch)
TRAIN_SECONDS = 3.0
#: seconds the clients get to connect and receive their first events before a window
CONNECT_SECONDS = 3.0


@dataclass
class Tally:
    """What the clients saw: streams opened, `points` events received, failures by kind."""

    opened: int = 0
    points_events: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def cpu_seconds(pid: int) -> float:
    """The process's user and system CPU seconds so far, all its threads together."""
    with open(f"/proc/{pid}/stat") as stat:
        # the fields after the command's name, which is in parentheses and may hold spaces
        fields = stat.read().rpartition(")")[2].split()
    # utime and stime are the stat file's fields 14 and 15; `fields` starts at field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _request(port: int, job_id: str, last_step: int) -> bytes:
    lines = [
        f"GET /jobs/{job_id}/events HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Accept: text/event-stream",
        f"Last-Event-ID: {last_step}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def watch(port: int, job_id: str, last_step: int, tally: Tally) -> None:
    """Follows the job's events until cancelled, counting the `points` events."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as exc:
        tally.errors[type(exc).__name__] += 1
        return
    try:
        writer.write(_request(port, job_id, last_step))
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        if status != "200":
            tally.errors[status] += 1
            return
        tally.opened += 1
        # an event's name may be cut across two reads: the end of the last read goes first
        carry = b""
        while data := await reader.read(1 << 16):
            received = carry + data
            tally.points_events += received.count(POINTS_EVENT)
            carry = received[-(len(POINTS_EVENT) - 1) :]
        tally.errors["stream ended"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        tally.errors[type(exc).__name__] += 1
    finally:
        writer.close()


async def window(
    port: int, api_pid: int, job_id: str, last_step: int, clients: int, seconds: float
) -> dict[str, Any]:
    """The API's CPU, in cores, over `seconds` while `clients` follow the job's events."""
    tally = Tally()
    watchers = [asyncio.create_task(watch(port, job_id, last_step, tally)) for _ in range(clients)]
    await asyncio.sleep(CONNECT_SECONDS)
    cpu, wall, events = cpu_seconds(api_pid), time.perf_counter(), tally.points_events
    await asyncio.sleep(seconds)
    cpu, wall = cpu_seconds(api_pid) - cpu, time.perf_counter() - wall
    events = tally.points_events - events
    for watcher in watchers:
        watcher.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    errors = tally.errors + Counter({"never opened": clients - tally.opened})
    return {
        "cores": cpu / wall,
        "events_per_s": events / wall,
        "errors": sum(errors.values()),
        "error_kinds": dict(+errors),
    }


def _step(client: httpx.Client, job_id: str) -> int:
    return int(client.get(f"/jobs/{job_id}").json()["progress"]["step"])


def measure(clients: int, seconds: float) -> dict[str, dict[str, Any]]:
    """The API's CPU with one client, then with `clients`, on one running job."""
    with api_and_workers(workers=1) as (client, api_pid):
        (job_id,) = start_training(client, 1)
        time.sleep(TRAIN_SECONDS)
        port = client.base_url.port
        assert port is not None
        out = {}
        for name, count in (("one", 1), ("many", clients)):
            last_step = _step(client, job_id)
            out[name] = asyncio.run(window(port, api_pid, job_id, last_step, count, seconds))
        if client.get(f"/jobs/{job_id}").json()["status"] != "running":
            raise RuntimeError("the training job ended before the test did")
        client.post(f"/jobs/{job_id}/cancel")
    return out


def rows(quick: bool) -> Iterator[Row]:
    clients, seconds = (20, 3.0) if quick else (100, 10.0)
    m = measure(clients, seconds)
    many, one = m["many"], m["one"]

    def figure(r: dict[str, Any], who: str) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in r["error_kinds"].items())
        return (
            f"{r['cores']:.2f} cores of the API's CPU ({who}; {r['events_per_s']:,.0f} points "
            f"events/s received, {r['errors']} errors{': ' + kinds if kinds else ''})"
        )

    yield Row(
        f"8. live events: {clients} SSE clients on one running job (the digits MLP), "
        f"the API's CPU over {seconds:.0f} s",
        figure(many, f"{clients} clients"),
        figure(one, "1 client"),
        f"{many['cores'] / one['cores']:.1f}" if one["cores"] > 0 else "-",
        f"< {MOST_CORES} core, no errors",
        many["cores"] < MOST_CORES and many["errors"] == 0,
    )
