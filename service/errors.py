"""Descent's own exceptions; the routes turn them into HTTP errors."""

from __future__ import annotations

from typing import Any

#: characters of a client's text (a cell, a name, an id) a message quotes
QUOTED = 100


def quoted(text: str) -> str:
    """`text` as repr writes it, cut to QUOTED characters: a message never echoes a whole text."""
    if len(text) <= QUOTED:
        return repr(text)
    return f"{text[:QUOTED]!r}... ({len(text)} characters)"


class DescentError(Exception):
    """Base of every error Descent raises on purpose."""


class NotFound(DescentError):
    """No such job (or not one the caller may see)."""


class Conflict(DescentError):
    """The request does not fit the job's state (cancelling a finished job)."""


class BadRequest(DescentError):
    """A query parameter that cannot be used (a malformed cursor)."""


class InvalidUpload(DescentError):
    """An uploaded file that is not a rectangular numeric CSV, or is past a limit."""


class InvalidSweep(DescentError):
    """A sweep whose grid names a path the spec lacks, is too large, or has an invalid point.

    `errors` are in FastAPI's validation format (`loc`, `msg`, `type`), located in the body.
    """

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e["msg"]) for e in errors))
