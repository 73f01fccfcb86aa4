"""The requests explorer (`/requests`): filter, sort and page through served requests; and
one request (`/requests/{span_id}`) with its queue, prefill and decode drawn as a bar."""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.errors import BadRequest, NotFound
from api.store.sql.deployments import EXPLORE_REQUESTS, REQUEST_BY_SPAN, REQUEST_FACETS
from web.pages.common import PageInfo, page_request
from web.render import respond

router = APIRouter(include_in_schema=False)

SORTS = {
    "time": "Newest first",
    "e2e": "Slowest end-to-end first",
    "ttft": "Slowest first token first",
    "output_tokens": "Most output tokens first",
    "prompt_tokens": "Longest prompt first",
}
PAGE_SIZES = (25, 50, 100, 200)


class RequestRow(BaseModel):
    time: datetime = Field(description="Arrival (UTC)")
    span_id: str
    trace_id: str
    request_id: str
    cluster: str
    host: str
    deployment: str
    model: str
    framework: str
    prompt_tokens: int | None
    cached_tokens: int | None
    output_tokens: int | None
    queue_s: float | None = Field(description="Seconds in the engine's queue")
    ttft_s: float | None = Field(description="Seconds to the first token")
    prefill_s: float | None = Field(description="Seconds of prefill compute")
    decode_s: float | None = Field(description="Seconds of decode")
    e2e_s: float = Field(description="Seconds end to end")
    finish_reason: str
    error: str
    gpu_uuids: list[str]


@dataclass(frozen=True, slots=True)
class Filters:
    deployment: str = ""
    model: str = ""
    host: str = ""
    status: str = ""
    min_e2e_s: float = 0.0
    sort: str = "time"
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Facet:
    deployment: str
    models: list[str]
    requests: int


@dataclass(frozen=True, slots=True)
class RequestsPage:
    page: PageInfo
    filters: Filters
    rows: list[RequestRow]
    next_cursor: str | None
    cursor: str | None
    facets: list[Facet] = field(default_factory=list)
    sorts: dict[str, str] = field(default_factory=lambda: dict(SORTS))


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    seconds: float
    meaning: str


@dataclass(frozen=True, slots=True)
class RequestPage:
    page: PageInfo
    request: RequestRow
    phases: list[Phase]


def encode_cursor(value: float, row_key: str) -> str:
    """`row_key`: the last row's span id then trace id (span ids may repeat across traces)."""
    return base64.urlsafe_b64encode(struct.pack(">d", value) + row_key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        (value,) = struct.unpack(">d", raw[:8])
        return value, raw[8:].decode()
    except (ValueError, binascii.Error, struct.error, UnicodeDecodeError) as exc:
        raise BadRequest("cursor is not one this page made; start again from the first page") from exc


def _filters(request: Request) -> Filters:
    q = request.query_params
    sort = q.get("sort", "time")
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}")
    status = q.get("status", "")
    if status not in ("", "ok", "error"):
        raise BadRequest("status must be ok, error or empty")
    try:
        min_e2e = float(q.get("min_e2e_s") or 0)
        limit = int(q.get("limit") or 50)
    except ValueError as exc:
        raise BadRequest("min_e2e_s and limit must be numbers") from exc
    if not 0 <= min_e2e < 1e6:
        raise BadRequest("min_e2e_s must be between 0 and 1,000,000 seconds")
    if limit not in PAGE_SIZES:
        raise BadRequest(f"limit must be one of {', '.join(map(str, PAGE_SIZES))}")
    return Filters(
        q.get("deployment", "")[:256],
        q.get("model", "")[:256],
        q.get("host", "")[:256],
        status,
        min_e2e,
        sort,
        limit,
    )


def build_requests(request: Request) -> RequestsPage:
    pr = page_request(request, default_window="24h")  # raw rows: a day is what people browse
    f = _filters(request)
    cursor = request.query_params.get("cursor") or None
    after_value, after_key = decode_cursor(cursor) if cursor else (0.0, "")
    rows = pr.store.rows(
        EXPLORE_REQUESTS[f.sort],
        since=pr.window.start,
        until=pr.window.end,
        deployment=f.deployment,
        model=f.model,
        host=f.host,
        min_e2e_s=f.min_e2e_s,
        status=f.status,
        has_cursor=1 if cursor else 0,
        after_value=after_value,
        after_key=after_key,
        limit=f.limit,
    )
    items = [RequestRow(**{k: v for k, v in r.items() if k != "sort_value"}) for r in rows]
    next_cursor = (
        encode_cursor(float(rows[-1]["sort_value"]), rows[-1]["span_id"] + rows[-1]["trace_id"])
        if len(rows) == f.limit
        else None
    )
    facets = [
        Facet(r["deployment"], sorted(r["models"]), int(r["requests"]))
        for r in pr.store.rows(REQUEST_FACETS, start=pr.window.start, end=pr.window.end, deployment="")
    ]
    return RequestsPage(
        pr.info("Requests", clusters={r.cluster for r in items}), f, items, next_cursor, cursor, facets
    )


PHASE_MEANING = {
    "queue": "waiting for a slot in the engine's batch",
    "prefill": "reading the prompt (compute-bound)",
    "decode": "writing the output, one token per step (memory-bound at low batch)",
    "other": "end-to-end time no phase accounts for (network, detokenising, scheduling)",
}


def build_request(request: Request, span_id: str) -> RequestPage:
    pr = page_request(request)
    since = datetime.now(UTC) - timedelta(days=pr.settings.raw_ttl_days + 1)
    # A request is its span id and trace id; span ids may repeat across traces, so the
    # explorer's links name the trace too (without it: the newest request with that span id).
    trace_id = request.query_params.get("trace", "")[:64]
    rows = pr.store.rows(REQUEST_BY_SPAN, span_id=span_id, trace_id=trace_id, since=since)
    if not rows:
        of_trace = f" in trace {trace_id!r}" if trace_id else ""
        raise NotFound(
            f"no request with span id {span_id!r}{of_trace} is stored (raw requests are kept "
            f"{pr.settings.raw_ttl_days} days)"
        )
    row = RequestRow(**rows[0])
    known = {"queue": row.queue_s, "prefill": row.prefill_s, "decode": row.decode_s}
    phases = [Phase(name, round(v, 6), PHASE_MEANING[name]) for name, v in known.items() if v is not None]
    other = row.e2e_s - sum(p.seconds for p in phases)
    if other > 1e-6:
        phases.append(Phase("other", round(other, 6), PHASE_MEANING["other"]))
    return RequestPage(pr.info(f"Request {row.request_id or span_id}", clusters=[row.cluster]), row, phases)


@router.get("/requests")
@router.get("/requests.json")
async def requests_page(request: Request) -> Response:
    return respond(request, "requests.html", await run_in_threadpool(build_requests, request))


@router.get("/requests/{span_id}")  # registered second: the .json route must win
@router.get("/requests/{span_id}.json")
async def request_page(request: Request, span_id: str) -> Response:
    return respond(request, "request.html", await run_in_threadpool(build_request, request, span_id[:64]))
