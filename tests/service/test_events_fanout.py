"""GET /jobs/{id}/events watched by many: one read of the job a tick for all its streams
(`service.api.tailers`), and each stream still gets every point once, in step order.

The app runs in this process, under uvicorn on a thread, over a real SQLite file, so the test
sees its engine's transactions and its event loop's tasks; a real `descent worker` process
trains the jobs. The slow-stream test drives a tailer directly, with the store's own writes.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, event

from service.api import tailers
from service.config import Settings
from service.main import create_app
from service.schemas.jobs import JobStatus
from service.store import curves, job_queue
from tests.conftest import both_backends, fit_spec, free_port, start_process, stop_process
from tests.service.test_events import Event, check_ids, parse
from worker.training.recorder import Chunk

pytestmark = pytest.mark.e2e

#: clients watching one job at once
WATCHERS = 20
#: a job of ~5000 one-sample steps, written every 0.05 s: its points arrive over many ticks
LONG_ENOUGH = {"batch_size": 1, "epochs": 100}
#: a job that runs until it is cancelled
UNTIL_CANCELLED = {"batch_size": 1, "epochs": 10_000}
#: seconds any wait of these tests may last before it fails the test (against a hang)
PATIENCE = 120.0
#: the worker that holds the slow-stream test's job
WORKER = "w1"


@dataclass
class Live:
    """The app under uvicorn on a thread of this process, and workers as processes."""

    url: str
    db_url: str
    app: FastAPI
    loop: asyncio.AbstractEventLoop
    http: httpx.Client
    folder: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        return self.app.state.engine  # type: ignore[no-any-return]

    def submit(self, spec: dict[str, Any]) -> str:
        response = self.http.post("/jobs", json=spec)
        assert response.status_code == 201, response.text
        return response.json()["id"]  # type: ignore[no-any-return]

    def start_worker(self) -> None:
        log = self.folder / "worker.log"
        env = {"DESCENT_DATABASE_URL": self.db_url, "DESCENT_FLUSH_SECONDS": "0.05"}
        proc = start_process(["worker", "--device", "cpu"], log, env)
        self.workers.append(proc)
        until(lambda: " ready (device" in log.read_text(), lambda: log.read_text()[-4000:])

    def tailer_tasks(self) -> list[str]:
        """The names of the tailer tasks alive on the app's event loop."""

        async def names() -> list[str]:
            return [t.get_name() for t in asyncio.all_tasks() if not t.done()]

        alive = asyncio.run_coroutine_threadsafe(names(), self.loop).result(PATIENCE)
        return [name for name in alive if name.startswith("tailer ")]

    def no_tailer_left(self) -> None:
        """Waits for every tailer task to end, then checks none takes newcomers either."""
        until(lambda: not self.tailer_tasks(), self.tailer_tasks)
        assert tailers.of(self.app.state, self.engine).running() == []

    def curves(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"/jobs/{job_id}/curves").json()["series"]  # type: ignore[no-any-return]


def until(ok: Callable[[], bool], what: Callable[[], Any]) -> None:
    """Waits for `ok()`; fails, saying `what()`, if it takes more than PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    while not ok():
        assert time.monotonic() < deadline, what()
        time.sleep(0.02)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    db_url = f"sqlite:///{tmp_path / 'descent.db'}"
    app = create_app(Settings(database_url=db_url))
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),))
    thread.start()
    url = f"http://127.0.0.1:{port}"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        until(lambda: server.started or not thread.is_alive(), lambda: "uvicorn never started")
        assert server.started, "uvicorn stopped before it started"
        with httpx.Client(base_url=url, timeout=PATIENCE) as http:
            yield Live(url, db_url, app, loop, http, tmp_path, workers)
    finally:
        for proc in workers:
            stop_process(proc)
        server.should_exit = True
        thread.join(PATIENCE)
        _close(loop)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Closes the stopped `loop`, its last tasks (sse-starlette's shutdown watcher) ended."""
    left = asyncio.all_tasks(loop)
    for task in left:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    loop.close()


def watch(
    live: Live,
    job_id: str,
    *,
    last_event_id: str | None = None,
    until: Callable[[list[Event]], bool] = lambda _: False,
    into: list[Event] | None = None,
) -> list[Event]:
    """The events of one connection, to its end or until `until(events)`, added to `into` as
    they come; its own client, so that it can run on a thread beside others."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    got: list[Event] = [] if into is None else into
    with (
        httpx.Client(base_url=live.url, timeout=PATIENCE) as http,
        http.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        for one in parse(response.iter_lines()):
            got.append(one)
            if until(got):
                break
    return got


class Watchers:
    """`count` clients streaming one job on threads, each from its start to its end; `started`
    returns once every one of them has had its first event."""

    def __init__(self, live: Live, job_id: str, count: int) -> None:
        self.events: list[list[Event]] = [[] for _ in range(count)]
        self.errors: list[BaseException] = []
        self._first = threading.Barrier(count + 1, timeout=PATIENCE)
        self._threads = [
            threading.Thread(target=self._watch, args=(live, job_id, i)) for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _watch(self, live: Live, job_id: str, i: int) -> None:
        def first_seen(got: list[Event]) -> bool:
            if len(got) == 1:
                self._first.wait()
            return False

        try:
            watch(live, job_id, until=first_seen, into=self.events[i])
        except BaseException as error:
            self.errors.append(error)
            self._first.abort()  # a client that failed early must not hold the others up

    def seen_past(self, step: int) -> bool:
        """Whether every one of them has been sent a point past `step`."""
        return all(events and int(events[-1].id or -1) > step for events in self.events)

    def started(self) -> None:
        try:
            self._first.wait()
        except threading.BrokenBarrierError:
            self.finished()  # raises what broke it
            raise

    def finished(self) -> list[list[Event]]:
        for thread in self._threads:
            thread.join(PATIENCE)
            assert not thread.is_alive(), "a stream never ended"
        if self.errors:
            raise self.errors[0]
        return self.events


def check_stream(live: Live, job_id: str, events: list[Event], status: str) -> None:
    """Every point once in step order, as GET /jobs/{id}/curves has them; then the end."""
    assert check_ids(events, start=-1) == live.curves(job_id)
    assert [e.name for e in events].count("end") == 1 and events[-1].name == "end"
    assert events[-1].data["status"] == status


def points_events(events: list[Event]) -> int:
    return sum(e.name == "points" for e in events)


def test_many_watchers_cost_one_read_a_tick(live: Live) -> None:
    job_id = live.submit(fit_spec(**LONG_ENOUGH))  # queued: no worker yet
    transactions: list[int] = []
    event.listen(live.engine, "begin", lambda _conn: transactions.append(1))
    watchers = Watchers(live, job_id, WATCHERS)
    watchers.started()  # all are subscribed while the job waits
    live.start_worker()
    streams = watchers.finished()
    live.no_tailer_left()  # every read is over: the counts are final

    reads = tailers.of(live.app.state, live.engine).reads[job_id]
    # each client's own look at the job (is it theirs?), and else only the tailer's reads: a
    # tick costs one read, whatever the number of watchers
    assert len(transactions) == WATCHERS + reads
    for events in streams:
        assert points_events(events) >= 2  # the points came while the streams were open
        check_stream(live, job_id, events, "succeeded")
    assert all(events == streams[0] for events in streams)  # the same as a single client


def test_a_reconnect_among_other_watchers_misses_nothing_and_gets_nothing_twice(
    live: Live,
) -> None:
    live.start_worker()
    job_id = live.submit(fit_spec(**UNTIL_CANCELLED))
    others = Watchers(live, job_id, 3)
    others.started()
    # one leaves after some points, and comes back while the others stream on
    before = watch(live, job_id, until=lambda got: points_events(got) == 2)
    last_id = before[-1].id
    assert last_id is not None
    # so that it comes back behind what the job's tailer has read
    until(lambda: others.seen_past(int(last_id)), lambda: others.events)

    def cancel_once_broadcast(got: list[Event]) -> bool:
        # its catch-up, then at least one point read for every watcher: the job can end
        if got[-1].name == "points" and points_events(got) == 2:
            assert live.http.post(f"/jobs/{job_id}/cancel").status_code == 200
        return False

    after = watch(live, job_id, last_event_id=last_id, until=cancel_once_broadcast)

    check_ids(after, start=int(last_id))  # it starts right after the last id it had
    check_stream(live, job_id, before + after, "cancelled")
    for events in others.finished():
        check_stream(live, job_id, events, "cancelled")
    live.no_tailer_left()


def test_the_tailer_stops_when_its_last_watcher_leaves(live: Live) -> None:
    live.start_worker()
    job_id = live.submit(fit_spec(**UNTIL_CANCELLED))
    streams = [watch(live, job_id, until=lambda got: points_events(got) == 1) for _ in range(2)]
    assert all(points_events(events) == 1 for events in streams)
    live.no_tailer_left()  # the job runs on, watched by no one: nothing reads it
    assert live.http.get(f"/jobs/{job_id}").json()["status"] == "running"
    # a newcomer starts a new tailer, which ends with the job

    def cancel_at_first(got: list[Event]) -> bool:
        if len(got) == 1:
            assert live.http.post(f"/jobs/{job_id}/cancel").status_code == 200
        return False

    check_stream(live, job_id, watch(live, job_id, until=cancel_at_first), "cancelled")
    live.no_tailer_left()


@both_backends
def test_a_slow_watcher_is_dropped_then_caught_up_without_holding_up_the_others(
    engine: Engine, claimed: job_queue.Claimed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tailers, "MAX_WAITING", 2)
    chunks = 6  # more updates than may wait for one watcher
    watched = tailers.Tailers(engine)

    async def scenario() -> tuple[list[tailers.Update], list[tailers.Update]]:
        with (
            tailers.watch(watched, job_id=claimed.id, after=-1) as fast,
            tailers.watch(watched, job_id=claimed.id, after=-1) as slow,
        ):
            fast_got = [await fast.next()]  # the job as it is, before any point
            for chunk in range(chunks):
                record(engine, claimed, range(chunk * 10 + 1, chunk * 10 + 11))
                while fast.after < chunk * 10 + 10:  # the slow one reads nothing meanwhile
                    fast_got.append(await fast.next())
            assert job_queue.finish(
                engine, job_pk=claimed.pk, worker_id=WORKER, status=JobStatus.succeeded
            )
            fast_got += await _to_the_end(fast)
            return fast_got, await _to_the_end(slow)

    fast_got, slow_got = asyncio.run(asyncio.wait_for(scenario(), PATIENCE))

    every_step = list(range(1, chunks * 10 + 1))
    for got in (fast_got, slow_got):
        assert [s for u in got for s in u.series.get("loss", ([], []))[0]] == every_step
        assert got[-1].row.status == JobStatus.succeeded
    # the slow one held two updates, was dropped, and had the rest in one catch-up read
    assert len(slow_got) < len(fast_got)
    assert max(len(u.series.get("loss", ([], []))[0]) for u in slow_got) > 10
    assert watched.running() == []


async def _to_the_end(subscription: tailers.Subscription) -> list[tailers.Update]:
    got = [await subscription.next()]
    while got[-1].row.status not in job_queue.FINISHED:
        got.append(await subscription.next())
    return got


@pytest.fixture
def claimed(engine: Engine) -> job_queue.Claimed:
    """A job a worker (`w1`) holds, with no points yet."""
    job_queue.create(engine, spec={"device": "cpu"}, owner=None, total_steps=60, total_epochs=1)
    job = job_queue.claim_next(engine, worker_id=WORKER, lease_seconds=30, has_gpu=False)
    assert job is not None
    return job


def record(engine: Engine, job: job_queue.Claimed, steps: range) -> None:
    """The worker records `loss` at `steps`, as a worker writes a chunk."""
    chunk = Chunk(step=steps[-1], epoch=0)
    for step in steps:
        chunk.add("loss", step, 1.0 / step)
    assert curves.record(engine, job_pk=job.pk, worker_id=WORKER, chunk=chunk, tails={})
