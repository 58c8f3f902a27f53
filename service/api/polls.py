"""`GET /jobs/{id}/curves` as a poll that costs little, however many watch the job.

Measured on 2 cores with 200 pollers, each once a second: a trip to the threadpool and back
cost more than the poll's own queries, and 40 threads reading at once fought for the GIL
until answers took seconds. So:

- the answer's `ETag` comes from two index look-ups (the job; its series' last steps), and
  `If-None-Match` with it is a 304 before any point is read;
- the bodies of the latest answers are kept by tag: pollers asking what another has just
  asked (dashboards opened together, pollers that saw the same flush) get its bytes;
- on SQLite, a local file whose readers never wait for a writer (WAL), a poll runs on the
  event loop when it reads at most INLINE_POINTS points; a longer read goes to a thread, at
  most LONG_READS at once, once for all the polls that saw the same tag meanwhile. On
  PostgreSQL, where every query is a network round trip that must not hold up the event
  loop, the whole poll runs in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from anyio import CapacityLimiter, to_thread
from fastapi import Response
from sqlalchemy import Engine

from service.api import conditional
from service.api.responses import dumps
from service.store import curves

#: points (at most: `curves.most_points`) a poll on SQLite reads on the event loop, ~20 ms
INLINE_POINTS = 20_000
#: longer curve reads on SQLite at once, in threads (they are CPU-bound: more would only
#: fight for the GIL); those that ask for the same meanwhile wait for its answer
LONG_READS = 2
#: bytes of answers kept, and the largest answer kept
ANSWERS_BYTES, ANSWER_MAX_BYTES = 32 << 20, 1 << 20

_answers = conditional.Answers(max_bytes=ANSWERS_BYTES, max_body=ANSWER_MAX_BYTES)
_long_reads = CapacityLimiter(LONG_READS)
#: the long reads under way, by the tag their askers saw (touched on the event loop only)
_in_flight: dict[str, asyncio.Future[tuple[str, bytes | None]]] = {}


@dataclass(frozen=True)
class CurvesQuery:
    """What a poll asks for: `GET /jobs/{job_id}/curves?names=&after=&start=&end=&points=`."""

    job_id: str
    names: list[str] | None
    window: curves.Window


async def curves_answer(
    engine: Engine, query: CurvesQuery, *, owner: str | None, if_none_match: str | None
) -> Response:
    """The answer to a poll: 304 while the tag it sent is current, else the points."""
    look = partial(_look, engine, query, owner, if_none_match)
    if engine.dialect.name != "sqlite":
        tag, body = await to_thread.run_sync(look, None)
    else:
        tag, body = look(INLINE_POINTS)
        if body is None and not conditional.matches(if_none_match, tag):
            # a long read, shared by whoever asks meanwhile: under no one's If-None-Match,
            # each checks its own
            tag, body = await _read_once(tag, partial(_look, engine, query, owner, None, None))
    if body is None or conditional.matches(if_none_match, tag):
        return conditional.not_modified(tag)
    return Response(body, media_type="application/json", headers=conditional.headers(tag))


def _look(
    engine: Engine,
    query: CurvesQuery,
    owner: str | None,
    if_none_match: str | None,
    most_points: int | None,
) -> tuple[str, bytes | None]:
    """The answer's tag, and its body: None when the tag matches `if_none_match`, or when
    the body is not kept and would read more than `most_points` points."""
    look = curves.snapshot(engine, job_id=query.job_id, owner=owner, names=query.names)
    with look as seen:
        row, ends = seen.job, seen.ends
        # what the answer is made of; a new attempt may record other values at the same steps
        tag = conditional.etag(str(engine.url), row.status, row.attempts, ends, query)
        if conditional.matches(if_none_match, tag):
            return tag, None
        if (body := _answers.get(tag)) is not None:
            return tag, body
        if most_points is not None and curves.most_points(ends, query.window) > most_points:
            return tag, None
        series = seen.read(query.window)
    # built by hand: validating a 100,000-point answer through pydantic would cost more than
    # reading it
    body = dumps(
        {
            "job_id": query.job_id,
            "status": row.status,
            "series": {name: {"steps": s, "values": v} for name, (s, v) in series.items()},
        }
    )
    _answers.put(tag, body)
    return tag, body


async def _read_once(
    tag: str, read: Callable[[], tuple[str, bytes | None]]
) -> tuple[str, bytes | None]:
    """`read()` in a thread, once for every poll that saw `tag` while it runs; its own tag
    and body, from its own snapshot (at least as new as `tag`'s)."""
    running = _in_flight.get(tag)
    if running is None:
        if (body := _answers.get(tag)) is not None:  # a read that ended since the poll looked
            return tag, body
        running = asyncio.ensure_future(to_thread.run_sync(read, limiter=_long_reads))
        _in_flight[tag] = running
        running.add_done_callback(partial(_landed, tag))
    # shielded: a poller that goes away must not cancel the read the others wait for
    return await asyncio.shield(running)


def _landed(tag: str, read: asyncio.Future[tuple[str, bytes | None]]) -> None:
    _in_flight.pop(tag, None)
    if not read.cancelled():
        read.exception()  # retrieved, so that a failure with no one left waiting is not logged
