"""GET /metrics."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.deps import SettingsDep, get_owner
from service.config import Settings

#: the classic text format, which every Prometheus reads (newer prometheus_client releases
#: name 1.0.0 as the latest; for names like ours the text is the same)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter(tags=["metrics"])
_bearer = HTTPBearer(auto_error=False)


def whose_jobs(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The owner whose jobs a scrape counts; None: every job.

    An open service, or the operator's DESCENT_METRICS_TOKEN, sees every job; an API token
    sees its own jobs only; with tokens set, anything else is a 401.
    """
    if settings.tokens and _is_metrics_token(settings, credentials):
        return None
    return get_owner(settings, credentials)


def _is_metrics_token(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> bool:
    if not settings.metrics_token or credentials is None:
        return False
    return hmac.compare_digest(credentials.credentials.encode(), settings.metrics_token.encode())


# left out of the OpenAPI document, whose routes all answer JSON: this one is for Prometheus,
# and answers text
@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request, owner: Annotated[str | None, Depends(whose_jobs)]) -> Response:
    """Prometheus metrics: job figures of the caller's jobs (all, for the operator's token)."""
    return Response(request.app.state.metrics.exposition(owner), media_type=CONTENT_TYPE)
