"""Conditional GETs: an `ETag` for an answer, and `304 Not Modified` to a client that has it.

A poll that finds nothing new then costs the few index look-ups its tag is made of, and no
body at all.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import Header, Response

#: how a poller's cache may keep an answer: only for the one who asked (it may need a token),
#: and asked again each time (304 when nothing changed)
CACHE_CONTROL = "private, no-cache"

IfNoneMatch = Annotated[
    str | None,
    Header(description="the `ETag` of the answer you have: 304 with no body while it is current"),
]

#: the 304 answer, for OpenAPI
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "nothing new since the answer whose `ETag` was sent as If-None-Match"}
}


def etag(*parts: object) -> str:
    """A strong tag for the answer that `parts` determine (same parts, same bytes)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()
    return f'"{digest}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether If-None-Match names `tag` (weak comparison, as RFC 9110 has it for GET) or is *."""
    if not if_none_match:
        return False
    given = [t.strip() for t in if_none_match.split(",")]
    return "*" in given or any(t.removeprefix("W/") == tag for t in given)


def not_modified(tag: str) -> Response:
    return Response(status_code=304, headers=headers(tag))


def headers(tag: str) -> dict[str, str]:
    return {"ETag": tag, "Cache-Control": CACHE_CONTROL}


class Answers:
    """The latest answers' bodies by `ETag`, for the pollers that ask for the same thing.

    Under a strong tag the same tag means the same bytes, so a body made for one poller serves
    every other that asks before the job records more: dashboards opened together on a job
    read its curves once, not once each. Bounded in bytes, oldest out first; thread-safe.
    """

    def __init__(self, max_bytes: int, max_body: int) -> None:
        self.max_bytes, self.max_body = max_bytes, max_body
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, tag: str) -> bytes | None:
        with self._lock:
            body = self._bodies.get(tag)
            if body is not None:
                self._bodies.move_to_end(tag)
            return body

    def put(self, tag: str, body: bytes) -> None:
        if len(body) > self.max_body:
            return
        with self._lock:
            if tag in self._bodies:
                return
            self._bodies[tag] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, oldest = self._bodies.popitem(last=False)
                self._bytes -= len(oldest)
