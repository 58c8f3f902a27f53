"""Descent's Python client (`http`) and the `descent` commands built on it (`commands`).

It speaks HTTP only: it may import httpx, rich and the public schemas; never the store, the
spec, the database or torch.
"""

from service.client.http import (
    DEFAULT_URL,
    FINISHED,
    POLL_SECONDS,
    Client,
    ClientError,
    Json,
    describe,
)

__all__ = ["DEFAULT_URL", "FINISHED", "POLL_SECONDS", "Client", "ClientError", "Json", "describe"]
