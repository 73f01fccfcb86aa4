"""The app factory: `create_app(settings)` builds everything a server process needs and
hangs it on `app.state`; nothing here runs at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import __version__, security
from api.errors import InferwatchError
from api.ingest.service import Ingestor
from api.ingest.writer import open_writer
from api.jobs.runtime import Background
from api.meta import Meta, open_meta, upgrade_metadata
from api.routes import alerts, deployments, findings, gpus, health, otlp, requests, session, settings_api
from api.settings import Settings
from api.store import Store, open_store
from api.store.migrate import migrate
from api.telemetry import ServerMetrics
from web import mount as mount_web
from web.errors import html_error, is_web_path

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, store: Store | None = None, meta: Meta | None = None) -> FastAPI:
    """A ready app. With `store` (or `meta`), that store (metadata database) is used as is
    (already migrated) and left open at shutdown; otherwise one is opened from settings,
    migrated, and closed at shutdown. Scheduled jobs start with the lifespan, if enabled."""
    metrics = ServerMetrics()
    owns_store = store is None
    if store is None:
        store = open_store(settings, observer=metrics.observe_store)
        migrate(store, settings)
    owns_meta = meta is None
    if meta is None:
        upgrade_metadata(settings)
        meta = open_meta(settings)
    background = Background(settings, meta, store)
    writer = open_writer(settings, store, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer.start()
        background.start()
        yield
        background.stop()
        writer.stop()
        if owns_meta:
            app.state.meta.close()
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
    app.state.writer = writer
    app.state.ingestor = Ingestor(settings, writer, metrics)
    app.state.meta = meta
    app.state.background = background

    for module in (health, otlp, requests, findings, settings_api, alerts, gpus, deployments):
        app.include_router(module.router)
    app.include_router(session.router)
    mount_web(app)
    _install_error_handlers(app)
    security.install(app, lambda scope, exc: render_error(Request(scope), exc))
    return app


def _is_otlp(request: Request) -> bool:
    return request.url.path in ("/v1/traces", "/v1/metrics", "/v1/logs")


def render_error(request: Request, exc: InferwatchError) -> Response:
    """The one rendering of our errors: a google.rpc.Status on OTLP paths, an HTML page (or,
    for 401, the login page) on web paths, JSON everywhere else."""
    if _is_otlp(request):
        return otlp.otlp_error_response(request, exc)
    if is_web_path(request.url.path):
        if exc.status == 401:
            return RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", status_code=303)
        return html_error(request, exc.status, exc.code, exc.message)
    headers = {"Retry-After": str(getattr(exc, "retry_after_s", 5))} if exc.status in (429, 503) else None
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InferwatchError)
    async def inferwatch_error(request: Request, exc: InferwatchError) -> Response:
        return render_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"where": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
            for err in exc.errors()
        ]
        message = "; ".join(f"{p['where']}: {p['problem']}" for p in problems) or "invalid request"
        if is_web_path(request.url.path):
            return html_error(request, 422, "invalid_parameter", message)
        body = {"error": {"code": "invalid_parameter", "message": message, "details": {"problems": problems}}}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if _is_otlp(request):
            from api.errors import InferwatchError as _Base

            internal = _Base("internal error; the server logged the details")
            return otlp.otlp_error_response(request, internal)
        if is_web_path(request.url.path):
            return html_error(request, 500, "internal", "internal error; the server logged the details")
        body = {"error": {"code": "internal", "message": "internal error; the server logged the details"}}
        return JSONResponse(body, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Unknown paths and wrong methods: an HTML page for the web, FastAPI's JSON otherwise.
        if is_web_path(request.url.path):
            return html_error(request, exc.status_code, "http", str(exc.detail))
        return await http_exception_handler(request, exc)
