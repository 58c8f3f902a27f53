"""Descent's own exceptions; the routes turn them into HTTP errors."""


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
