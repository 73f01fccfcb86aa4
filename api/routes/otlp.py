"""OTLP/HTTP receivers: `POST /v1/traces` and `POST /v1/metrics`."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.errors import InferwatchError, PayloadTooLarge
from api.ingest.body import Encoding
from api.ingest.service import Ingestor, Reply

router = APIRouter(tags=["ingest"])

_OTLP_BODY = {
    "content": {
        "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"type": "object"}},
    },
    "required": True,
}


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _export(
    request: Request, signal: str, handler: Callable[[Ingestor], Callable[..., Reply]]
) -> Response:
    ingestor: Ingestor = request.app.state.ingestor
    metrics = request.app.state.metrics
    request.state.otlp_signal = signal
    encoding = ingestor.encoding(request.headers.get("content-type"))
    request.state.otlp_encoding = encoding
    body = await read_capped(request, request.app.state.settings.max_body_bytes)
    metrics.ingest_in_flight.inc()
    try:
        reply = await run_in_threadpool(
            handler(ingestor), body, encoding, request.headers.get("content-encoding")
        )
    finally:
        metrics.ingest_in_flight.dec()
    metrics.ingest_requests.labels(signal, "200").inc()
    return Response(content=reply.body, media_type=reply.media_type)


@router.post("/v1/traces", openapi_extra={"requestBody": _OTLP_BODY}, summary="OTLP/HTTP trace export")
async def export_traces(request: Request) -> Response:
    return await _export(request, "traces", lambda i: i.traces)


@router.post("/v1/metrics", openapi_extra={"requestBody": _OTLP_BODY}, summary="OTLP/HTTP metrics export")
async def export_metrics(request: Request) -> Response:
    return await _export(request, "metrics", lambda i: i.metrics)


def otlp_error_response(request: Request, exc: InferwatchError) -> Response:
    """A google.rpc.Status body in the request's encoding, as the OTLP spec asks."""
    from google.rpc import status_pb2

    from api.ingest.body import serialize

    encoding = getattr(request.state, "otlp_encoding", None) or Encoding.JSON
    status = status_pb2.Status(code=_grpc_code(exc.status), message=exc.message)
    signal = getattr(request.state, "otlp_signal", request.url.path.rsplit("/", 1)[-1])
    metrics = request.app.state.metrics
    metrics.ingest_requests.labels(signal, str(exc.status)).inc()
    metrics.ingest_bad_requests.labels(signal, exc.code).inc()
    headers = {}
    if exc.status in (429, 503):
        headers["Retry-After"] = str(getattr(exc, "retry_after_s", 5))
    return Response(
        serialize(status, encoding), status_code=exc.status, media_type=encoding.value, headers=headers
    )


def _grpc_code(http_status: int) -> int:
    # google.rpc.Code values for the statuses we send.
    return {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 429: 8, 503: 14}.get(http_status, 13)
