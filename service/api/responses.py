"""JSON responses that are always valid JSON: non-finite numbers go out as null."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

from service.schemas.errors import ErrorMessage

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

# The error answers the routes may give besides their own, as OpenAPI documents them.
#: every route behind the bearer token
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorMessage,
        "description": "no valid `Authorization: Bearer <token>` header, where DESCENT_API_TOKENS"
        " is set",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
    }
}
#: every route that names a job, a dataset or a sweep
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorMessage, "description": "no such id, or not one the caller's token made"}
}
#: every route that reads a body
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorMessage,
        "description": "a body that cannot be parsed (not UTF-8, nested too deep, a malformed"
        " multipart form)",
    },
    413: {
        "model": ErrorMessage,
        "description": "a body larger than DESCENT_MAX_UPLOAD_BYTES",
    },
}

#: the answer of a route that draws a picture
PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a PNG image"}
}


def dumps(content: Any) -> bytes:
    # orjson writes NaN and +-Infinity as null, where json.dumps would write bare NaN tokens
    return orjson.dumps(content, option=_OPTIONS)


class SafeJSONResponse(JSONResponse):
    """The service's default response class."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


async def validation_error(request: Request, exc: Exception) -> SafeJSONResponse:
    """FastAPI's usual 422 body, safe for any input it echoes: NaN, raw bytes, huge integers."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(
        exc.errors(),
        custom_encoder={bytes: lambda b: b.decode("latin-1"), int: _echo_int, str: _echo_str},
    )
    return SafeJSONResponse({"detail": errors}, status_code=422)


def _echo_int(n: int) -> int | str:
    # orjson writes integers of at most 64 bits; a larger one a client sent goes back as digits
    return n if -(2**63) <= n < 2**64 else str(n)


def _echo_str(s: str) -> str:
    # a lone surrogate ("\ud800" in the JSON) is not text orjson can write; it goes back as "?"
    return s.encode("utf-8", "replace").decode("utf-8")
