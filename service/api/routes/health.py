"""GET /health."""

from fastapi import APIRouter

from service.api.deps import EngineDep, SettingsDep
from service.api.responses import SafeJSONResponse
from service.store import workers

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    responses={503: {"description": "the database does not answer"}},
)
def health(engine: EngineDep, settings: SettingsDep) -> SafeJSONResponse:
    """`ok` and the workers seen within a lease once the database answers; 503 while not."""
    try:
        answer = workers.health(engine, within_seconds=settings.lease_seconds)
    except Exception as exc:  # noqa: BLE001 - any failure means the database is not answering
        return SafeJSONResponse(
            {"status": "unavailable", "database": engine.dialect.name, "error": str(exc)[:200]},
            status_code=503,
        )
    return SafeJSONResponse(answer)
