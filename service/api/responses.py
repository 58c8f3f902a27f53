"""JSON responses that are always valid JSON: non-finite numbers go out as null."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(content: Any) -> bytes:
    # orjson writes NaN and +-Infinity as null, where json.dumps would write bare NaN tokens
    return orjson.dumps(content, option=_OPTIONS)


class SafeJSONResponse(JSONResponse):
    """The service's default response class."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


async def validation_error(request: Request, exc: Exception) -> SafeJSONResponse:
    """FastAPI's usual 422 body, safe for inputs such as NaN that json.dumps would refuse."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: b.decode("latin-1")})
    return SafeJSONResponse({"detail": errors}, status_code=422)
