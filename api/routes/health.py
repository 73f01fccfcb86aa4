"""Liveness and the server's own metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import get_store
from api.errors import StoreError
from api.store import Query, Store

router = APIRouter(tags=["health"])

PING = Query("health.ping", "SELECT 1")


@router.get("/healthz", summary="Liveness: the server answers and the store responds")
async def healthz(store: Store = Depends(get_store)) -> JSONResponse:
    try:
        await run_in_threadpool(store.scalar, PING)
    except StoreError as exc:
        return JSONResponse({"status": "degraded", "store": exc.message}, status_code=503)
    return JSONResponse({"status": "ok", "store": "ok"})


@router.get("/metrics", summary="The server's own metrics (Prometheus text format)")
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
