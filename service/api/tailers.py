"""One reader per watched job: every event stream of a job shares its reads of the database.

A job's first stream starts its `Tailer`, one asyncio task that reads the job's row and its
points after the tailer's cursor once a tick (`curves.job_points_after`, in a thread) and gives
each of the job's `Subscription`s what is new to it. Twenty watchers cost one read a tick,
not twenty.

- Joining: a new stream's catch-up is not a read of its own. It wakes the tailer, whose next
  read starts at the lowest step anyone still needs (its cursor, or a newcomer's
  Last-Event-ID), and every subscription is given only the points after its own last step.
  The reads of a job are never concurrent, so no catch-up can race a broadcast: no point is
  missed, none is given twice, and progress never goes back.
- A slow stream: at most MAX_WAITING updates wait for one subscription. One more and the
  tailer drops it; once its stream has sent what it holds, it joins again as a newcomer from
  its last step. Its client sees nothing of this; the others never wait for it.
- Stopping: a tailer stops when its last subscription leaves, or once the job has finished
  and that last read has gone out to every subscription. A deleted job (NotFound), or any
  other error of a read, ends every subscription with it.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, NamedTuple

import anyio
from sqlalchemy import Engine
from starlette.datastructures import State

from service.errors import NotFound
from service.store import curves, job_queue
from service.store.curves import Series

#: seconds between reads of a watched job
POLL_SECONDS = 0.25
#: updates that may wait for one subscription; one more and it is dropped and joins again
MAX_WAITING = 64


class Update(NamedTuple):
    """The job's row as read, and its points after the last step the subscription was given."""

    row: Any
    series: Series


class Subscription:
    """One stream's place at its job's tailer: the updates that wait for the stream."""

    def __init__(self, tailers: Tailers, job_id: str, after: int) -> None:
        self.job_id = job_id
        #: the last step given to this subscription
        self.after = after
        self.tailer: Tailer | None = None
        self._tailers = tailers
        self._waiting: deque[Update] = deque()
        self._ready = asyncio.Event()
        self._dropped = False
        self._ended: Exception | None = None

    async def next(self) -> Update:
        """The next update; raises NotFound once the job is deleted, or what a read raised."""
        while not self._waiting:
            if self._ended is not None:
                raise _again(self._ended)
            if self._dropped:  # all it held has gone out: join again from there
                self._dropped = False
                self._tailers.join(self)
            self._ready.clear()
            await self._ready.wait()
        return self._waiting.popleft()

    def offer(self, row: Any, series: Series, *, always: bool) -> bool:
        """Queue the points after its last step (and the row, if anything is new or `always`);
        False, queueing nothing, when too much waits already."""
        new = points_after(series, self.after)
        if not new and not always:
            return True
        if len(self._waiting) >= MAX_WAITING:
            return False
        self._waiting.append(Update(row, new))
        self.after = max(self.after, last_step(new, default=self.after))
        self._ready.set()
        return True

    def drop(self) -> None:
        self._dropped = True
        self._ready.set()

    def end(self, error: Exception) -> None:
        self._ended = error
        self._ready.set()


def _again(error: Exception) -> Exception:
    """A fresh exception for each stream: one object raised in many would gather tracebacks."""
    if isinstance(error, NotFound):
        return NotFound(str(error))
    fresh = RuntimeError(f"reading the job failed: {error!r}")
    fresh.__cause__ = error
    return fresh


class Tailer:
    """One job's reader: a task that reads the job once a tick for all its subscriptions."""

    def __init__(self, tailers: Tailers, job_id: str) -> None:
        self.job_id = job_id
        self._tailers = tailers
        self._subscribed: set[Subscription] = set()
        self._joining: set[Subscription] = set()  # they wait for the next read
        self._catching_up: set[Subscription] = set()  # the read under way is also theirs
        self._cursor: int | None = None  # the last step read; None before the first read
        self._last_row: Any = None
        self._wake = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.create_task(self._run(), name=f"tailer {job_id}")

    def join(self, subscription: Subscription) -> None:
        subscription.tailer = self
        self._joining.add(subscription)
        self._wake.set()  # a newcomer is not made to wait out the tick

    def leave(self, subscription: Subscription) -> bool:
        """Forget `subscription`; True when none is left."""
        for group in (self._subscribed, self._joining, self._catching_up):
            group.discard(subscription)
        if self._everyone():
            return False
        self._wake.set()  # so the task ends now
        return True

    def _everyone(self) -> set[Subscription]:
        return self._subscribed | self._joining | self._catching_up

    async def _run(self) -> None:
        try:
            while self._subscribed or self._joining:
                row = await self._tick()
                if row.status in job_queue.FINISHED and not self._joining:
                    return  # everything went out: no later read has anything new
                await self._sleep()
        except Exception as error:
            for subscription in self._everyone():
                subscription.end(error)
        finally:
            self._tailers.forget(self)

    async def _tick(self) -> Any:
        """One read, for the subscribed and for those that joined since the last one."""
        self._catching_up, self._joining = self._joining, set()
        start = min([s.after for s in self._catching_up] + _listed(self._cursor), default=-1)
        self._tailers.reads[self.job_id] += 1
        row, series = await anyio.to_thread.run_sync(
            partial(self._tailers.read, job_id=self.job_id, after=start)
        )
        changed = row != self._last_row
        self._last_row, self._cursor = row, last_step(series, default=start)
        for subscription in list(self._subscribed):
            if not subscription.offer(row, series, always=changed):
                self._subscribed.discard(subscription)
                subscription.drop()
        for subscription in self._catching_up:  # their first update: never over the limit
            subscription.offer(row, series, always=True)
        self._subscribed |= self._catching_up
        self._catching_up = set()
        return row

    async def _sleep(self) -> None:
        if not self._joining:
            with anyio.move_on_after(POLL_SECONDS):
                await self._wake.wait()
        self._wake.clear()


def _listed(cursor: int | None) -> list[int]:
    return [] if cursor is None else [cursor]


class Tailers:
    """The tailers of one app's jobs, one per watched job."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._by_job: dict[str, Tailer] = {}
        #: reads of each job's row and points since the app started
        self.reads: Counter[str] = Counter()

    def read(self, *, job_id: str, after: int) -> tuple[Any, Series]:
        # every stream's owner was checked when it opened: the tailer reads for any of them
        return curves.job_points_after(self._engine, job_id=job_id, owner=None, after=after)

    def join(self, subscription: Subscription) -> None:
        """Add `subscription` to its job's tailer, started for it if the job has none."""
        tailer = self._by_job.get(subscription.job_id)
        # a tailer of another event loop (a test client's, closed since) is never joined
        if tailer is None or tailer.loop is not asyncio.get_running_loop():
            tailer = self._by_job[subscription.job_id] = Tailer(self, subscription.job_id)
        tailer.join(subscription)

    def leave(self, subscription: Subscription) -> None:
        tailer = subscription.tailer
        if tailer is not None and tailer.leave(subscription):
            self.forget(tailer)

    def forget(self, tailer: Tailer) -> None:
        """Stop giving `tailer` newcomers: the next one starts a tailer of its own."""
        if self._by_job.get(tailer.job_id) is tailer:
            del self._by_job[tailer.job_id]

    def running(self) -> list[asyncio.Task[None]]:
        """The tasks of the tailers that take newcomers."""
        return [tailer.task for tailer in self._by_job.values()]


def of(state: State, engine: Engine) -> Tailers:
    """The app's tailers, kept on its `state`: apps (and tests) never share them."""
    tailers: Tailers | None = getattr(state, "tailers", None)
    if tailers is None:
        tailers = state.tailers = Tailers(engine)
    return tailers


@contextmanager
def watch(tailers: Tailers, *, job_id: str, after: int) -> Iterator[Subscription]:
    """A subscription to the job's updates after step `after`, for as long as it is open."""
    subscription = Subscription(tailers, job_id, after)
    tailers.join(subscription)
    try:
        yield subscription
    finally:
        tailers.leave(subscription)


def points_after(series: Series, after: int) -> Series:
    """The points of `series` past step `after`; series with none left out."""
    out: Series = {}
    for name, (steps, values) in series.items():
        start = bisect_right(steps, after)
        if start < len(steps):
            out[name] = (steps, values) if start == 0 else (steps[start:], values[start:])
    return out


def last_step(series: Series, *, default: int) -> int:
    return max((steps[-1] for steps, _ in series.values() if steps), default=default)
