"""`GET /api/v1/requests`: ingested requests with every normalised field, newest first."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import get_store
from api.errors import BadRequest
from api.store import Store
from api.store.sql.requests import LIST_REQUESTS
from api.timewindow import check_time

router = APIRouter(tags=["requests"])

_FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RequestOut(BaseModel):
    time: datetime = Field(description="Arrival time (UTC)")
    end_time: datetime = Field(description="Arrival plus end-to-end time (UTC)")
    trace_id: str
    span_id: str
    request_id: str
    cluster: str
    host: str
    deployment: str
    model: str
    framework: str = Field(
        description="Span convention the row was read with: vllm, sglang, tgi, genai, generic"
    )
    prompt_tokens: int | None
    cached_tokens: int | None
    output_tokens: int | None
    n: int | None
    max_tokens: int | None
    temperature: float | None
    queue_s: float | None = Field(description="Seconds waiting in the engine's queue")
    ttft_s: float | None = Field(description="Seconds from arrival to the first output token")
    prefill_s: float | None = Field(description="Seconds of prefill compute, queueing excluded")
    decode_s: float | None = Field(description="Seconds of decode, first token to last")
    e2e_s: float = Field(description="Seconds from arrival to the last token")
    finish_reason: str
    error: str
    gpu_uuids: list[str]


class RequestPage(BaseModel):
    items: list[RequestOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")


def encode_cursor(time: datetime, row_key: str) -> str:
    """`row_key`: the span id then the trace id of the last row (span ids may repeat across
    traces). Cursors that carry only the span id, from before, still read."""
    micros = (time - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}:{row_key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, row_key = raw.split(":", 1)
        return check_time(_EPOCH + timedelta(microseconds=int(micros)), "cursor"), row_key
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError, BadRequest) as exc:
        raise BadRequest("cursor is not one this API returned") from exc


@router.get("/api/v1/requests", response_model=RequestPage, summary="Requests, newest first")
async def list_requests(
    deployment: str = Query("", max_length=256),
    model: str = Query("", max_length=256),
    cluster: str = Query("", max_length=256),
    since: datetime | None = Query(None, description="Earliest arrival (ISO 8601); default 24 h ago"),
    until: datetime | None = Query(None, description="Latest arrival, exclusive (ISO 8601); default now"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=200),
    store: Store = Depends(get_store),
) -> RequestPage:
    now = datetime.now(UTC)
    until = check_time(_utc(until), "until") if until else now + timedelta(seconds=1)
    since = check_time(_utc(since), "since") if since else until - timedelta(days=1)
    if since >= until:
        raise BadRequest("since must be before until")
    before_time, before_key = decode_cursor(cursor) if cursor else (_FAR_FUTURE, "")
    rows = await run_in_threadpool(
        store.rows,
        LIST_REQUESTS,
        since=since,
        until=until,
        deployment=deployment,
        model=model,
        cluster=cluster,
        before_time=before_time,
        before_key=before_key,
        limit=limit,
    )
    items = [RequestOut(**row) for row in rows]
    last = items[-1] if len(items) == limit else None
    next_cursor = encode_cursor(last.time, last.span_id + last.trace_id) if last else None
    return RequestPage(items=items, next_cursor=next_cursor)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
