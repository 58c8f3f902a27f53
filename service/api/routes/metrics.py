"""GET /metrics."""

from fastapi import APIRouter, Request, Response
from prometheus_client import generate_latest

#: the classic text format, which every Prometheus reads (newer prometheus_client releases
#: name 1.0.0 as the latest; for names like ours the text is the same)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter(tags=["metrics"])


# left out of the OpenAPI document, whose routes all answer JSON behind the bearer token: this
# one is for Prometheus, open, and answers text
@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics; open like /health even with tokens set, as they are counts only."""
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE)
