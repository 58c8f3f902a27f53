"""GET /health."""

from fastapi import APIRouter
from sqlalchemy import text

from service.api.deps import EngineDep
from service.api.responses import SafeJSONResponse

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    responses={503: {"description": "the database does not answer"}},
)
def health(engine: EngineDep) -> SafeJSONResponse:
    """`ok` once the database answers; 503 while it does not."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means the database is not answering
        return SafeJSONResponse(
            {"status": "unavailable", "database": engine.dialect.name, "error": str(exc)[:200]},
            status_code=503,
        )
    return SafeJSONResponse({"status": "ok", "database": engine.dialect.name})
