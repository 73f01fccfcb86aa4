"""Gathering the weekly email's inputs: the week's findings, what each local day's GPUs
cost and what their idle minutes cost, and the same figures for the week before."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api.findings.catalogue import PriceBook
from api.findings.engine import run_findings
from api.findings.model import Finding
from api.jobs.schedule import previous_week
from api.meta import Meta
from api.meta.acks import muted_fingerprints
from api.meta.overlay import with_configured
from api.reports.model import DayCost, WeekFigures, WeeklyInputs
from api.settings import Settings
from api.store import Store
from api.store.sql.reports import GPU_DAYS
from api.timewindow import Window


def local_days(start: datetime, end: datetime, tz: str) -> list[date]:
    """The local dates that [start, end) covers."""
    zone = ZoneInfo(tz)
    first = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def price_days(
    rows: Iterable[Mapping[str, Any]], prices: PriceBook, days: Sequence[date]
) -> tuple[list[DayCost], float, float]:
    """Priced days (every day in `days`, zero where nothing reported) and the week's
    GPU-hours and idle GPU-hours, from `reports.gpu_days` rows."""
    spend: dict[date, float] = defaultdict(float)
    idle: dict[date, float] = defaultdict(float)
    hours = idle_hours = 0.0
    for r in rows:
        per_hour = prices.per_hour(r["gpu_name"], r["host"])
        spend[r["day"]] += int(r["minutes"]) / 60 * per_hour
        idle[r["day"]] += int(r["idle_minutes"]) / 60 * per_hour
        hours += int(r["minutes"]) / 60
        idle_hours += int(r["idle_minutes"]) / 60
    return [DayCost(d, spend[d], idle[d]) for d in days], hours, idle_hours


def week_figures(
    store: Store,
    settings: Settings,
    start: datetime,
    end: datetime,
    tz: str,
    findings: Sequence[Finding] = (),
) -> WeekFigures:
    rows = store.rows(GPU_DAYS, since=start, until=end, tz=tz, idle_pct=settings.findings.idle_threshold_pct)
    days, hours, idle_hours = price_days(rows, PriceBook(settings.cost), local_days(start, end, tz))
    return WeekFigures(
        start=start,
        end=end,
        timezone=tz,
        spend_usd=sum(d.spend_usd for d in days),
        idle_usd=sum(d.idle_usd for d in days),
        gpu_hours=hours,
        idle_gpu_hours=idle_hours,
        days=days,
        findings=tuple(findings),
    )


def gather_weekly_inputs(
    store: Store, meta: Meta, settings: Settings, *, sent_at: datetime, tz: str, simulated: bool = False
) -> WeeklyInputs:
    """The inputs of the email sent at `sent_at`: the seven whole local days before it,
    and the seven before those (None when nothing reported then)."""
    start, end = previous_week(sent_at, tz)
    with meta.session() as session:
        configured = with_configured(settings, session)
        muted = muted_fingerprints(session, now=sent_at)
    findings = run_findings(store, configured, Window(start, end))
    this_week = week_figures(store, configured, start, end, tz, findings)
    before_start, _ = previous_week(start, tz)
    last_week = week_figures(store, configured, before_start, start, tz)
    return WeeklyInputs(
        this_week=this_week,
        last_week=last_week if last_week.gpu_hours > 0 else None,
        base_url=settings.base_url,
        top_n=settings.notify.report_top_findings,
        muted=frozenset(muted),
        simulated=simulated,
    )
