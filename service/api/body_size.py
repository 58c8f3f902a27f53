"""A limit on the size of every request body, enforced before any route reads it."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.responses import dumps

#: bytes a body may carry past the upload limit: multipart boundaries, headers, form fields
FRAMING_BYTES = 64 * 1024


class BodySizeLimit:
    """Answers 413 to a body larger than `max_bytes` plus framing.

    A declared Content-Length is judged before anything is read; a chunked body is counted as
    it arrives, and the app sees it end (a disconnect) once it passes the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, framing: int = FRAMING_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.allowed = max_bytes + framing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _content_length(scope) > self.allowed:
            await self._refuse(send)
            return
        seen = 0
        over = started = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                over = seen > self.allowed
            return {"type": "http.disconnect"} if over else message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a body cut short gives way to the 413
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        detail = (
            f"the request body is larger than {self.max_bytes} bytes (DESCENT_MAX_UPLOAD_BYTES)"
        )
        body = dumps({"detail": detail})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int:
    """The declared length, or 0 where none is (or it is not a number: the server refuses it)."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0
