"""JSON responses that are always valid JSON: non-finite numbers go out as null."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

from service.schemas.errors import ErrorMessage
from service.spec import locate_errors

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


#: characters of a client's text (a field's value, a key, a path) an error answer echoes
ECHOED = 200
#: characters of an error's message, which may quote the client's text
MESSAGE = 500
#: items of a list or fields of an object an error answer echoes; a larger one is described
ECHOED_ITEMS = 10
#: errors one 422 lists; the others are counted in a last one
LISTED_ERRORS = 20


async def validation_error(request: Request, exc: Exception) -> SafeJSONResponse:
    """FastAPI's usual 422 body, safe for any input it echoes: NaN, raw bytes, huge integers.

    However large the input, the answer stays small: each echoed value is cut to a few hundred
    characters, and past LISTED_ERRORS errors the rest are only counted.
    """
    assert isinstance(exc, RequestValidationError)
    errors = locate_errors(exc.errors())  # a rule between fields, at the field it names
    listed = [_bounded(error) for error in errors[:LISTED_ERRORS]]
    if len(errors) > LISTED_ERRORS:
        listed.append(_left_out(errors[LISTED_ERRORS], len(errors) - LISTED_ERRORS))
    content = jsonable_encoder(
        listed,
        custom_encoder={bytes: lambda b: b.decode("latin-1"), str: _echo_str},
    )
    return SafeJSONResponse({"detail": content}, status_code=422)


def cut(text: str, limit: int = MESSAGE) -> str:
    """`text`, or its first `limit` characters and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _bounded(error: Any) -> dict[str, Any]:
    bounded = dict(error)
    bounded["loc"] = [_echo(part) for part in error.get("loc", ())]
    bounded["msg"] = cut(_quoting_less(str(error.get("msg", "")), error))
    if "input" in error:
        bounded["input"] = _echo(error["input"])
    if isinstance(error.get("ctx"), dict):
        bounded["ctx"] = {cut(str(k), ECHOED): _echo(v) for k, v in error["ctx"].items()}
    return bounded


def _quoting_less(msg: str, error: Any) -> str:
    """`msg` with each long text of the error's input and context it quotes cut short.

    So "Input tag '<10 MB>' ... expected tags: ..." keeps its end, which says what would do.
    """
    ctx = error.get("ctx")
    quoted = [error.get("input"), *(ctx.values() if isinstance(ctx, dict) else ())]
    for text in quoted:
        if isinstance(text, str) and len(text) > ECHOED and text in msg:
            msg = msg.replace(text, cut(text, ECHOED))
    return msg


def _left_out(first: Any, count: int) -> dict[str, Any]:
    return {
        "type": "too_many_errors",
        "loc": [_echo(part) for part in first.get("loc", ())],
        "msg": f"{count} more errors, from this one on, left out",
    }


def _echo(value: Any, depth: int = 0) -> Any:
    """`value` as an error answer may echo it: text cut, large lists and objects described."""
    if isinstance(value, bool | float) or value is None:
        return value
    if isinstance(value, int):
        # orjson writes integers of at most 64 bits; a larger one goes back as its digits
        return value if -(2**63) <= value < 2**64 else cut(str(value), ECHOED)
    if isinstance(value, str):
        return cut(value, ECHOED)
    if isinstance(value, bytes):
        return cut(value.decode("latin-1"), ECHOED)
    if isinstance(value, dict):
        return _echo_object(value, depth)
    if isinstance(value, list | tuple | set | frozenset):
        return _echo_list(list(value), depth)
    return value  # an exception in `ctx` and the like: the encoder writes it as {}


def _echo_list(items: list[Any], depth: int) -> Any:
    summary = f"a list of {_count(len(items), 'item')}"
    if len(items) > ECHOED_ITEMS or depth >= 2:
        return summary
    echoed = [_echo(item, depth + 1) for item in items]
    return echoed if len(str(echoed)) <= ECHOED else summary


def _echo_object(fields: dict[Any, Any], depth: int) -> Any:
    summary = f"an object of {_count(len(fields), 'field')}"
    if len(fields) > ECHOED_ITEMS or depth >= 2:
        return summary
    echoed = {cut(str(k), ECHOED): _echo(v, depth + 1) for k, v in fields.items()}
    return echoed if len(str(echoed)) <= ECHOED else summary


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _echo_str(s: str) -> str:
    # a lone surrogate ("\ud800" in the JSON) is not text orjson can write; it goes back as "?"
    return s.encode("utf-8", "replace").decode("utf-8")
