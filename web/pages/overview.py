"""The overview (`/`): the window's GPU spend, waste by cause in dollars, the top findings
and the daily trend of spend and idle spend."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.findings.hour_rows import HourRows
from api.routes.gpus import FleetData, FleetTotals, ModelLine, read_fleet_hours
from web.pages.common import PageInfo, page_request
from web.pages.findings import FindingView, WasteLine, load_views, waste_by_cause
from web.render import respond

router = APIRouter(include_in_schema=False)
TOP_FINDINGS = 5


@dataclass(frozen=True, slots=True)
class DailyTrend:
    days: list[datetime]
    cost_usd: list[float]
    idle_cost_usd: list[float]


@dataclass(frozen=True, slots=True)
class OverviewPage:
    page: PageInfo
    totals: FleetTotals
    by_model: list[ModelLine]
    waste: list[WasteLine]
    waste_weekly_usd: float
    top_findings: list[FindingView]
    findings_total: int
    trend: DailyTrend


def daily_trend(data: FleetData) -> DailyTrend:
    """Spend and idle spend per UTC day: each GPU-hour's minutes at its GPU's price."""
    h = data.hours
    listed = data.position[h.gpu] >= 0 if len(h.gpu) else np.zeros(0, dtype=bool)
    price = np.array([g.usd_per_hour for g in data.gpus] or [0.0])[data.position[h.gpu][listed]]
    days, at = np.unique(h.hour[listed] // 86400 * 86400, return_inverse=True)
    cost = np.bincount(at, weights=h.minutes[listed] / 60 * price, minlength=len(days))
    idle = np.bincount(at, weights=h.idle_minutes[listed] / 60 * price, minlength=len(days))
    return DailyTrend(
        [datetime.fromtimestamp(d, UTC) for d in days.tolist()],
        [round(c, 2) for c in cost.tolist()],
        [round(i, 2) for i in idle.tolist()],
    )


def build_overview(request: Request) -> OverviewPage:
    pr = page_request(request)
    f = pr.settings.findings
    # Both halves read the hourly GPU rollup over the window (the findings its whole hours):
    # where the fleet's GPU-hours are not kept, its read serves the findings too.
    rows = HourRows(
        pr.store, pr.window.start, pr.window.end, idle_pct=f.idle_threshold_pct, held_mib=f.held_memory_mib
    )
    # The findings on a second thread: the store answers one side's queries while this
    # thread adds up the other's rows (chDB releases the GIL while it runs a query).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="overview-findings") as pool:
        loading = pool.submit(load_views, pr, hour_rows=rows)
        try:
            data = read_fleet_hours(pr.store, pr.settings, pr.window, hour_rows=rows)
        finally:
            rows.settle()  # the findings wait for the fleet's decision
        trend = daily_trend(data)
        views = [v for v in loading.result() if not v.muted]
    waste = waste_by_cause(views)
    return OverviewPage(
        page=pr.info("Overview", clusters={g.cluster for g in data.gpus}),
        totals=data.totals,
        by_model=data.by_model,
        waste=waste,
        waste_weekly_usd=round(sum(w.weekly_usd for w in waste), 2),
        top_findings=views[:TOP_FINDINGS],
        findings_total=len(views),
        trend=trend,
    )


@router.get("/")
@router.get("/index.json")
async def overview_page(request: Request) -> Response:
    return respond(request, "overview.html", await run_in_threadpool(build_overview, request))
