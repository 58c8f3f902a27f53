"""The body of an error answer other than a validation error."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorMessage(BaseModel):
    """What went wrong, as a sentence a person can act on."""

    detail: str
