"""`GET /api/v1/findings` and `GET /api/v1/cost`: the findings and the cost model over a
window, bounded and paginated (offset cursors over a list computed per request). Both use
the prices and deployments saved on the settings pages (`api.meta.overlay`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import get_store
from api.errors import BadRequest
from api.findings.engine import align, run_cost
from api.findings.model import Finding, Severity
from api.findings.unit_cost import CostBy, CostLine
from api.routes.gpus import configured_settings
from api.routes.results import kept_findings
from api.store import Store
from api.timewindow import window_ending

router = APIRouter(tags=["findings"])


class ScopeOut(BaseModel):
    kind: str = Field(description="gpu, host, deployment or cluster")
    id: str = Field(description="The GPU UUID, host name, deployment name or cluster name")
    cluster: str


class WindowOut(BaseModel):
    start: datetime
    end: datetime


class FindingOut(BaseModel):
    id: str = Field(
        description="Stable fingerprint of kind + scope (+ key): the same finding keeps it across runs"
    )
    kind: str = Field(
        description="idle_held, idle_empty, idle_pattern, fleet_oversized, fleet_undersized, "
        "fleet_wrong_gpu_type, speculative_candidate, speculative_off, quantisation, workload_*"
    )
    severity: Severity
    scope: ScopeOut
    window: WindowOut
    title: str = Field(description="One line with the number that matters")
    evidence: dict[str, Any] = Field(description="The figures the finding was computed from")
    query: str = Field(description="Name of the store query that produced the evidence")
    weekly_usd: float = Field(
        description="Dollars a week the change saves (effect=saving) or costs (effect=cost)"
    )
    effect: str = Field(description="saving, cost, or none (a latency finding)")
    recommendation: str
    caveats: list[str]


class FindingsPage(BaseModel):
    window: WindowOut
    total: int = Field(description="Findings over the window, before paging")
    weekly_saving_usd: float = Field(
        description="Sum of weekly_usd over saving findings, idle_pattern excluded "
        "(its hours are also in idle_held / idle_empty)"
    )
    items: list[FindingOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


class CostLineOut(BaseModel):
    cluster: str
    key: str = Field(description="The deployment, model, GPU model or host")
    gpus: float = Field(description="Distinct GPUs that reported")
    gpu_hours: float
    usd: float = Field(description="Dollars over the window: GPU-hours × price per GPU-hour")
    usd_per_week: float
    util_mean_pct: float | None = Field(
        description="Mean utilisation the dollars bought (SM activity, else NVML)"
    )
    requests: int | None
    output_tokens: int | None
    usd_per_1m_output_tokens: float | None
    usd_per_request: float | None


class CostPage(BaseModel):
    window: WindowOut
    by: CostBy
    total_usd: float
    total_usd_per_week: float
    items: list[CostLineOut]
    next_cursor: str | None


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit() or len(cursor) > 9:
        raise BadRequest("cursor is not one this API returned")
    return int(cursor)


def finding_out(f: Finding) -> FindingOut:
    return FindingOut.model_validate(f.to_dict())


@router.get(
    "/api/v1/findings", response_model=FindingsPage, summary="Findings over a window, most severe first"
)
async def list_findings(
    request: Request,
    window: str = Query("7d", max_length=16, description="Window length: 1d, 7d, 30d, …"),
    end: datetime | None = Query(
        None, description="End of the window (ISO 8601, UTC if no zone); default now"
    ),
    kind: str = Query("", max_length=64, description="Only findings of this kind"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=16),
    store: Store = Depends(get_store),
) -> FindingsPage:
    w = align(window_ending(window, end))
    offset = _offset(cursor)
    settings = await run_in_threadpool(configured_settings, request)
    findings = await run_in_threadpool(kept_findings, store, settings, w)
    if kind:
        findings = [f for f in findings if f.kind == kind]
    page = findings[offset : offset + limit]
    saving = sum(f.weekly_usd for f in findings if f.effect.value == "saving" and f.kind != "idle_pattern")
    return FindingsPage(
        window=WindowOut(start=w.start, end=w.end),
        total=len(findings),
        weekly_saving_usd=round(saving, 2),
        items=[finding_out(f) for f in page],
        next_cursor=str(offset + limit) if offset + limit < len(findings) else None,
    )


def cost_line_out(line: CostLine) -> CostLineOut:
    return CostLineOut(
        cluster=line.cluster,
        key=line.key,
        gpus=line.gpus,
        gpu_hours=round(line.gpu_hours, 4),
        usd=round(line.usd, 2),
        usd_per_week=round(line.usd_per_week, 2),
        util_mean_pct=None if line.util_mean_pct is None else round(line.util_mean_pct, 2),
        requests=line.requests,
        output_tokens=line.output_tokens,
        usd_per_1m_output_tokens=None
        if line.usd_per_1m_output_tokens is None
        else round(line.usd_per_1m_output_tokens, 4),
        usd_per_request=None if line.usd_per_request is None else round(line.usd_per_request, 6),
    )


@router.get("/api/v1/cost", response_model=CostPage, summary="What the fleet cost, grouped")
async def get_cost(
    request: Request,
    window: str = Query("7d", max_length=16, description="Window length: 1d, 7d, 30d, …"),
    end: datetime | None = Query(
        None, description="End of the window (ISO 8601, UTC if no zone); default now"
    ),
    by: CostBy = Query(CostBy.DEPLOYMENT, description="Group by deployment, model, gpu_model or host"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=16),
    store: Store = Depends(get_store),
) -> CostPage:
    w = align(window_ending(window, end))
    offset = _offset(cursor)
    settings = await run_in_threadpool(configured_settings, request)
    lines = await run_in_threadpool(run_cost, store, settings, w, by)
    total = sum(line.usd for line in lines)
    return CostPage(
        window=WindowOut(start=w.start, end=w.end),
        by=by,
        total_usd=round(total, 2),
        total_usd_per_week=round(total / w.weeks, 2),
        items=[cost_line_out(line) for line in lines[offset : offset + limit]],
        next_cursor=str(offset + limit) if offset + limit < len(lines) else None,
    )
