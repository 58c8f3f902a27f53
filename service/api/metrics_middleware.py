"""Times every HTTP request into the app's `descent_http_request_duration_seconds`."""

from __future__ import annotations

import time

from fastapi import FastAPI
from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics

#: the `route` label of a request that matched no route (so a scan of URLs adds one series)
UNMATCHED = "unmatched"
#: methods kept as their own label value; any other is counted as `other`
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def instrument(app: FastAPI) -> None:
    """Give `app` its metrics (`app.state.metrics`) and time its requests; call it last."""
    app.state.metrics = Metrics(app.state.engine)
    app.add_middleware(RequestTimer, histogram=app.state.metrics.request_seconds)


class RequestTimer:
    """Pure ASGI, so a streamed answer is neither buffered nor delayed.

    The `route` label is the matched route's template (`/jobs/{job_id}`), never the raw URL,
    which keeps the number of series bounded.
    """

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # the router wrote the matched route into the scope on its way through
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.histogram.labels(method, route, str(status)).observe(time.perf_counter() - start)
