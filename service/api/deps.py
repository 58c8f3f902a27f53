"""Dependencies of the routes, as `Annotated` aliases."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from sqlalchemy import Engine

from service.config import Settings
from service.spec import TEXT_PATTERN
from service.spec.limits import Limits
from service.store import curves, paging

_bearer = HTTPBearer(auto_error=False)


# The dependencies are `async`, though they never wait: FastAPI runs a plain `def` one in its
# threadpool, and three trips there and back cost a poll more than its queries.
async def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_owner(
    settings: Annotated[Settings, Depends(get_app_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """None when the service is open; else who the valid bearer token belongs to."""
    tokens = settings.tokens
    if not tokens:
        return None
    given = credentials.credentials.encode() if credentials is not None else b""
    # compare against every token, in constant time, so timing tells nothing
    matched = [hmac.compare_digest(given, t.encode()) for t in tokens]
    if not any(matched):
        raise HTTPException(
            status_code=401,
            detail="a valid 'Authorization: Bearer <token>' header is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return hashlib.sha256(given).hexdigest()[:32]


async def current_owner(
    settings: Annotated[Settings, Depends(get_app_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """`get_owner` as a dependency that runs on the event loop (see `get_engine`)."""
    return get_owner(settings, credentials)


#: the range of the database's integer columns (keys, steps): 32 bits on PostgreSQL
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _a_key(cursor: str | None) -> str | None:
    if cursor is not None and int(cursor) > INT32_MAX:
        raise ValueError(f"cursor {cursor!r} is not one this service gave out")
    return cursor


#: ids as the routes take them: one with a NUL character is refused before a query is built
JobId = Annotated[str, Path(pattern=TEXT_PATTERN)]
DatasetId = Annotated[str, Path(pattern=TEXT_PATTERN)]
SweepId = Annotated[str, Path(pattern=TEXT_PATTERN)]
#: a list's `next_cursor`: the digits of a key
Cursor = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{1,10}$", description="the previous page's `next_cursor`"),
    AfterValidator(_a_key),
]

EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_limits(request: Request) -> Limits:
    return Limits.of(request.app.state.settings)


#: the limits on a job's size this deployment sets (DESCENT_MAX_*, DESCENT_WORKER_MEMORY)
LimitsDep = Annotated[Limits, Depends(get_limits)]
OwnerDep = Annotated[str | None, Depends(current_owner)]


def curve_window(
    after: Annotated[
        int | None,
        Query(ge=INT32_MIN, le=INT32_MAX, description="only points with step > after"),
    ] = None,
    start: Annotated[
        int | None,
        Query(ge=INT32_MIN, le=INT32_MAX, description="only points with step >= start"),
    ] = None,
    end: Annotated[
        int | None,
        Query(ge=INT32_MIN, le=INT32_MAX, description="only points with step <= end"),
    ] = None,
    points: Annotated[
        int | None,
        Query(ge=2, le=INT32_MAX, description="thin each series (in the window) to at most N"),
    ] = None,
) -> curves.Window:
    """Which points of a curve a read wants: a window of steps, thinned or whole."""
    if start is not None and end is not None and end < start:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "end"),
                    "msg": f"end ({end}) is before start ({start}): the window holds no step",
                    "input": end,
                }
            ]
        )
    return curves.Window(after=after, start=start, end=end, points=points)


#: `after`, `start`, `end` and `points` of a curve read (API.md section 4)
CurveWindow = Annotated[curves.Window, Depends(curve_window)]

#: how many items a page of a list holds
PageLimit = Annotated[int, Query(ge=1, le=paging.MAX_PAGE)]
