"""GET /jobs/{id}/events: a job's progress and new curve points as Server-Sent Events.

Events, each with `id:` the last curve step the client has been sent (-1 before any):
`points` `{"series": {name: {"steps", "values"}}}` (the steps after the previous one),
`progress` `{"status", "progress"}` when either changed, and last `end`, the job as
`GET /jobs/{id}` answers it (or `gone` `{"detail"}` if it is deleted meanwhile). A reconnect
with `Last-Event-ID: S` gets the points after S.

The streams of one job share its reads: `tailers` reads the job once a tick for all of them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from service.api import tailers
from service.api.deps import INT32_MAX, INT32_MIN, EngineDep, JobId, OwnerDep
from service.api.responses import NOT_FOUND, UNAUTHORIZED, dumps
from service.errors import NotFound
from service.store import job_queue
from service.store.curves import Series

#: seconds between looks at the client (gone?) and the server (stopping?) while nothing is new
LOOK_SECONDS = tailers.POLL_SECONDS
#: seconds between keep-alive comments, so proxies do not close a quiet stream
PING_SECONDS = 15
#: seconds one write may wait on a client that stopped reading before the stream is dropped
SEND_TIMEOUT_SECONDS = 30.0
#: seconds a stream gets to end cleanly when the server shuts down
SHUTDOWN_GRACE_SECONDS = 1.0
#: most steps one `points` event carries: a long backlog goes out as several events
MAX_STEPS_PER_EVENT = 10_000

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=UNAUTHORIZED)

_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "events `points`, `progress` and, once the job has finished, `end`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.get("/{job_id}/events", response_class=EventSourceResponse, responses=_STREAM | NOT_FOUND)
async def job_events(
    job_id: JobId,
    request: Request,
    engine: EngineDep,
    owner: OwnerDep,
    last_event_id: Annotated[
        int | None,
        Header(ge=INT32_MIN, le=INT32_MAX, description="the id of the last event received"),
    ] = None,
) -> EventSourceResponse:
    """The job's progress and new curve points as they are recorded, then its end state."""
    await anyio.to_thread.run_sync(partial(job_queue.get, engine, job_id=job_id, owner=owner))
    # a minimize job has a step 0, so "nothing sent yet" is -1
    after = -1 if last_event_id is None else last_event_id
    # set by sse-starlette when the server shuts down: the stream then ends cleanly, and the
    # client reconnects with its Last-Event-ID
    stopping = anyio.Event()
    watched = tailers.of(request.app.state, engine)
    stream = _stream(request, watched, stopping, job_id=job_id, after=after)
    return EventSourceResponse(
        stream,
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
        shutdown_event=stopping,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )


async def _stream(
    request: Request,
    watched: tailers.Tailers,
    stopping: anyio.Event,
    *,
    job_id: str,
    after: int,
) -> AsyncIterator[ServerSentEvent]:
    """The job's updates from its tailer until it has finished and every point has gone out."""
    last_state: dict[str, Any] | None = None
    with tailers.watch(watched, job_id=job_id, after=after) as subscription:
        while not stopping.is_set() and not await request.is_disconnected():
            try:
                update = await _next(subscription)
            except NotFound:
                yield _event("gone", {"detail": f"job {job_id} was deleted"}, after)
                return
            if update is None:
                continue
            for last, batch in _batches(update.series):
                after = last
                yield _event("points", {"series": batch}, after)
            job = job_queue.to_public(update.row)
            state = {"status": job.status.value, "progress": job.progress.model_dump()}
            if state != last_state:
                last_state = state
                yield _event("progress", state, after)
            if job.status.finished:
                yield _event("end", job.model_dump(mode="json"), after)
                return


async def _next(subscription: tailers.Subscription) -> tailers.Update | None:
    """The next update, or None after LOOK_SECONDS without one."""
    with anyio.move_on_after(LOOK_SECONDS):
        return await subscription.next()
    return None


def _batches(series: Series) -> Iterator[tuple[int, dict[str, dict[str, list[Any]]]]]:
    """(last step, the series' points up to it) per MAX_STEPS_PER_EVENT steps, whole steps."""
    steps = sorted({s for ss, _ in series.values() for s in ss})
    previous: int | None = None
    for start in range(0, len(steps), MAX_STEPS_PER_EVENT):
        last = steps[min(start + MAX_STEPS_PER_EVENT, len(steps)) - 1]
        batch: dict[str, dict[str, list[Any]]] = {}
        for name, (ss, vs) in series.items():
            lo = 0 if previous is None else bisect_right(ss, previous)
            hi = bisect_right(ss, last)
            if hi > lo:
                batch[name] = {"steps": ss[lo:hi], "values": vs[lo:hi]}
        yield last, batch
        previous = last


def _event(name: str, data: Any, last_step: int) -> ServerSentEvent:
    # orjson: NaN and infinities go out as null, never as bare tokens
    return ServerSentEvent(dumps(data).decode(), event=name, id=str(last_step))
