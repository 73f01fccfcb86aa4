"""`build_weekly_report(inputs) -> Email`: the weekly cost-waste email, HTML and plain text,
from figures and findings handed in. Pure: no clock, no network, no database.

Figures shown are the inputs' own, formatted with the findings' `usd()` so the email and
the dashboard print the same dollars. Waste by cause sums the findings that save money,
per kind; `idle_pattern` findings describe idle hours already counted by `idle_held` /
`idle_empty`, so they are listed but not added to the total.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from api.findings.model import Effect, Finding, usd
from api.reports.model import Email, WeekFigures, WeeklyInputs

CAUSES: dict[str, str] = {
    "idle_empty": "Idle GPUs with nothing loaded",
    "idle_held": "Idle GPUs holding a model",
    "idle_pattern": "Idle hours that repeat daily",
    "fleet_oversized": "Over-sized fleets",
    "fleet_wrong_gpu_type": "A pricier GPU type than needed",
    "fleet_undersized": "Under-sized fleets",
    "quantisation": "Quantisation",
    "speculative_candidate": "Speculative decoding",
    "speculative_off": "Speculative decoding to turn off",
}
# Kinds whose dollars are already inside other kinds' (the finding's own caveat says so).
NOT_ADDED = frozenset({"idle_pattern"})
SEVERITY_COLOURS = {"high": "#c0392b", "medium": "#d68910", "low": "#2874a6", "info": "#7f8c8d"}


@dataclass(frozen=True, slots=True)
class Change:
    text: str
    colour: str


@dataclass(frozen=True, slots=True)
class CauseRow:
    label: str
    kind: str
    findings: int
    usd: str
    added: bool


@dataclass(frozen=True, slots=True)
class FindingRow:
    severity: str
    colour: str
    title: str
    money: str
    fix: str
    link: str


@dataclass(frozen=True, slots=True)
class DayRow:
    label: str
    idle: str
    spend: str
    bar_pct: int
    idle_share: str


@dataclass(frozen=True, slots=True)
class View:
    """What the templates render: every figure already formatted."""

    title: str
    period: str
    timezone: str
    simulated: bool
    spend: str
    spend_change: Change
    idle: str
    idle_share: str
    idle_change: Change
    gpu_hours: str
    idle_gpu_hours: str
    days: list[DayRow]
    causes: list[CauseRow]
    savings_total: str
    overlap_note: bool
    capacity_cost: str | None
    top: list[FindingRow]
    more_findings: int
    muted_count: int
    links: dict[str, str]


def change(now: float, before: float | None) -> Change:
    """Week-over-week change of a cost: up is red, down is green."""
    if before is None:
        return Change("no figures for last week", "#7f8c8d")
    if before == 0:
        return Change("new this week" if now > 0 else "no change", "#7f8c8d")
    pct = (now - before) / before * 100
    if round(pct) == 0:
        return Change("no change vs last week", "#7f8c8d")
    arrow, colour = ("▲", "#c0392b") if pct > 0 else ("▼", "#1e8449")
    return Change(f"{arrow} {abs(pct):.0f}% vs last week ({usd(before)})", colour)


def one_line(text: str, limit: int = 180) -> str:
    """The first sentence of a recommendation, cut to `limit` characters."""
    first = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def finding_link(base_url: str, finding: Finding) -> str:
    return f"{base_url.rstrip('/')}/findings/{quote(finding.fingerprint, safe='')}"


def _money(finding: Finding) -> str:
    if finding.effect == Effect.SAVING:
        return f"save {usd(finding.weekly_usd)}/week"
    if finding.effect == Effect.COST:
        return f"costs {usd(finding.weekly_usd)}/week"
    return ""


def _period(week: WeekFigures) -> str:
    zone = ZoneInfo(week.timezone)
    first = week.start.astimezone(zone)
    last = (week.end - timedelta(seconds=1)).astimezone(zone)
    if first.year != last.year:
        return f"{first:%-d %b %Y} – {last:%-d %b %Y}"
    if first.month != last.month:
        return f"{first:%-d %b} – {last:%-d %b %Y}"
    return f"{first:%-d}–{last:%-d %b %Y}"


def _causes(findings: Sequence[Finding]) -> tuple[list[CauseRow], float]:
    dollars: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for f in findings:
        if f.effect == Effect.SAVING:
            dollars[f.kind] += f.weekly_usd
            counts[f.kind] += 1
    rows = [
        CauseRow(
            CAUSES.get(kind, kind.replace("_", " ")),
            kind,
            counts[kind],
            usd(dollars[kind]),
            kind not in NOT_ADDED,
        )
        for kind in sorted(dollars, key=lambda k: (-dollars[k], k))
    ]
    total = sum(v for k, v in dollars.items() if k not in NOT_ADDED)
    return rows, total


def _days(week: WeekFigures) -> list[DayRow]:
    peak = max((d.idle_usd for d in week.days), default=0.0)
    rows = []
    for d in week.days:
        pct = round(d.idle_usd / peak * 100) if peak > 0 else 0
        share = f"{d.idle_usd / d.spend_usd * 100:.0f}%" if d.spend_usd > 0 else "–"
        rows.append(
            DayRow(
                f"{d.day:%a %-d %b}",
                usd(d.idle_usd),
                usd(d.spend_usd),
                max(pct, 1) if d.idle_usd > 0 else 0,
                share,
            )
        )
    return rows


def view(inputs: WeeklyInputs) -> View:
    """The formatted figures of the email (what both templates render)."""
    week, last = inputs.this_week, inputs.last_week
    base = inputs.base_url.rstrip("/")
    causes, savings = _causes(week.findings)
    capacity = sum(f.weekly_usd for f in week.findings if f.effect == Effect.COST)
    shown = [f for f in week.findings if f.fingerprint not in inputs.muted]
    shown.sort(key=lambda f: (f.effect == Effect.NONE, -f.weekly_usd, f.kind, f.fingerprint))
    top = [
        FindingRow(
            f.severity.value,
            SEVERITY_COLOURS.get(f.severity.value, "#7f8c8d"),
            f.title,
            _money(f),
            one_line(f.recommendation),
            finding_link(base, f),
        )
        for f in shown[: inputs.top_n]
    ]
    period = _period(week)
    share = f"{week.idle_usd / week.spend_usd * 100:.0f}%" if week.spend_usd > 0 else "–"
    return View(
        title=f"inferwatch weekly: {usd(week.spend_usd)} on GPUs, {usd(week.idle_usd)} idle",
        period=period,
        timezone=week.timezone,
        simulated=inputs.simulated,
        spend=usd(week.spend_usd),
        spend_change=change(week.spend_usd, last.spend_usd if last else None),
        idle=usd(week.idle_usd),
        idle_share=share,
        idle_change=change(week.idle_usd, last.idle_usd if last else None),
        gpu_hours=f"{week.gpu_hours:,.0f}",
        idle_gpu_hours=f"{week.idle_gpu_hours:,.0f}",
        days=_days(week),
        causes=causes,
        savings_total=usd(savings),
        overlap_note=any(not c.added for c in causes),
        capacity_cost=usd(capacity) if capacity > 0 else None,
        top=top,
        more_findings=max(0, len(shown) - len(top)),
        muted_count=sum(1 for f in week.findings if f.fingerprint in inputs.muted),
        links={
            "dashboard": base + "/",
            "findings": base + "/findings",
            "fleet": base + "/fleet",
            "settings": base + "/settings/report",
        },
    )


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("api.reports", "templates"),
        # HTML escaped; the plain-text part must not be (an "&" stays "&").
        autoescape=select_autoescape(
            enabled_extensions=("html",), disabled_extensions=("txt",), default=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def build_weekly_report(inputs: WeeklyInputs) -> Email:
    """The weekly email for `inputs`. Pure: the same inputs give the same email."""
    v = view(inputs)
    env = _environment()
    html = env.get_template("weekly.html").render(v=v)
    text = env.get_template("weekly.txt").render(v=v)
    subject = f"{v.title} ({v.period})"
    if v.simulated:
        subject = "[simulated data] " + subject
    links = tuple(dict.fromkeys([*v.links.values(), *(row.link for row in v.top)]))
    return Email(subject=subject, html=html, text=text, links=links)
