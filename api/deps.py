"""FastAPI dependencies: what a route may ask for. The objects live on `app.state`,
built once by `create_app(settings)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from api.settings import Settings
from api.store import Store

if TYPE_CHECKING:
    from api.meta import Meta
    from api.telemetry import ServerMetrics


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_metrics(request: Request) -> ServerMetrics:
    return request.app.state.metrics


def get_meta(request: Request) -> Meta:
    meta: Meta = request.app.state.meta
    return meta
