"""The app factory: `create_app(settings)` builds everything a server process needs and
hangs it on `app.state`; nothing here runs at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from api import __version__
from api.errors import InferwatchError
from api.ingest.service import Ingestor
from api.routes import health, otlp, requests
from api.settings import Settings
from api.store import Store, open_store
from api.store.migrate import migrate
from api.telemetry import ServerMetrics

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, store: Store | None = None) -> FastAPI:
    """A ready app. With `store`, that store is used as is (already migrated) and left
    open at shutdown; otherwise one is opened from settings, migrated, and closed at shutdown."""
    metrics = ServerMetrics()
    owns_store = store is None
    if store is None:
        store = open_store(settings, observer=metrics.observe_store)
        migrate(store, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_store:
            app.state.store.close()

    app = FastAPI(
        title="inferwatch",
        version=__version__,
        description="Where the money and the milliseconds of self-hosted GPU inference go.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.metrics = metrics
    app.state.ingestor = Ingestor(settings, store, metrics)

    for module in (health, otlp, requests):
        app.include_router(module.router)
    _install_error_handlers(app)
    return app


def _is_otlp(request: Request) -> bool:
    return request.url.path in ("/v1/traces", "/v1/metrics", "/v1/logs")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InferwatchError)
    async def inferwatch_error(request: Request, exc: InferwatchError) -> Response:
        if _is_otlp(request):
            return otlp.otlp_error_response(request, exc)
        headers = {"Retry-After": str(getattr(exc, "retry_after_s", 5))} if exc.status in (429, 503) else None
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"where": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
            for err in exc.errors()
        ]
        message = "; ".join(f"{p['where']}: {p['problem']}" for p in problems) or "invalid request"
        body = {"error": {"code": "invalid_parameter", "message": message, "details": {"problems": problems}}}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if _is_otlp(request):
            from api.errors import InferwatchError as _Base

            internal = _Base("internal error; the server logged the details")
            return otlp.otlp_error_response(request, internal)
        body = {"error": {"code": "internal", "message": "internal error; the server logged the details"}}
        return JSONResponse(body, status_code=500)
