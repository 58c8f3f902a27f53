"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.body_size import BodySizeLimit
from service.api.main import api_router
from service.api.metrics_middleware import instrument
from service.api.responses import SafeJSONResponse, cut, validation_error
from service.config import Settings
from service.db.engine import make_engine
from service.db.migrate import migrate
from service.errors import BadRequest, Conflict, InvalidUpload, NotFound

_STATUS = {NotFound: 404, Conflict: 409, BadRequest: 422, InvalidUpload: 422}


def create_app(settings: Settings, *, run_migrations: bool = True) -> FastAPI:
    """The API over the database `settings` name; the schema is migrated on start."""
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_migrations:
            migrate(engine)
        yield
        engine.dispose()

    app = FastAPI(
        title="Descent",
        summary="Training jobs for gradient-descent experiments",
        version="0.1.0",
        default_response_class=SafeJSONResponse,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_type, status in _STATUS.items():
        app.add_exception_handler(exc_type, _error_handler(status))
    app.include_router(api_router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    instrument(app)  # outermost: times the whole request
    return app


def _error_handler(status: int):  # type: ignore[no-untyped-def]
    async def handle(request: Request, exc: Exception) -> SafeJSONResponse:
        # the message may quote an id or a value the client sent: never more than a few
        # hundred characters of it
        return SafeJSONResponse({"detail": cut(str(exc))}, status_code=status)

    return handle


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own answer to an HTTPException, with a text detail cut as the others are."""
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.detail, str):
        exc = StarletteHTTPException(exc.status_code, cut(exc.detail), exc.headers)
    return await http_exception_handler(request, exc)
