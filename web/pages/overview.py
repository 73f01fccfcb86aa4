"""The overview (`/`): the window's GPU spend, waste by cause in dollars, the top findings
and the daily trend of spend and idle spend."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.routes.gpus import FleetTotals, ModelLine, as_utc, epoch_seconds, read_fleet_hours
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


def build_overview(request: Request) -> OverviewPage:
    pr = page_request(request)
    data = read_fleet_hours(pr.store, pr.settings, pr.window)
    price = {g.gpu_uuid: g.usd_per_hour for g in data.gpus}
    cost: dict[datetime, float] = defaultdict(float)
    idle: dict[datetime, float] = defaultdict(float)
    hours = data.hours
    day = pa.array(epoch_seconds(hours["hour"]) // 86400 * 86400)
    by_day = (
        pa.table(
            {"gpu_uuid": hours["gpu_uuid"], "day": day, "m": hours["minutes"], "i": hours["idle_minutes"]}
        )
        .group_by(["gpu_uuid", "day"])
        .aggregate([("m", "sum"), ("i", "sum")])
    )
    for uuid, stamp, minutes, idle_minutes in zip(
        *(by_day[c].to_pylist() for c in ("gpu_uuid", "day", "m_sum", "i_sum")), strict=True
    ):
        when = as_utc(stamp)
        cost[when] += minutes / 60 * price.get(uuid, 0.0)
        idle[when] += idle_minutes / 60 * price.get(uuid, 0.0)
    days = sorted(cost)
    trend = DailyTrend(days, [round(cost[d], 2) for d in days], [round(idle[d], 2) for d in days])
    views = [v for v in load_views(pr) if not v.muted]
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
