"""Idle GPU hours (DESIGN §4.1): GPUs that hold memory but compute nothing, GPUs with
nothing loaded, and the daily hours in which GPUs sit idle every day (or every weekday).

A GPU-minute is idle when its max utilisation is below `idle_threshold_pct` and no
request was in flight on it (or on its host, for requests that name no GPU); that test
runs in the store (`findings.gpu_usage`), this module prices and groups the result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from api.findings.catalogue import PriceBook
from api.findings.inputs import GpuUsage
from api.findings.model import Effect, Finding, Scope, ScopeKind, hhmm, per_week, severity_for, usd
from api.findings.settings import FindingsSettings
from api.timewindow import Window

QUERY = "findings.gpu_usage"
MAX_LISTED_GPUS = 20
DAY_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("every day", (0, 1, 2, 3, 4, 5, 6)),
    ("on weekdays", (0, 1, 2, 3, 4)),
    ("on weekends", (5, 6)),
)
_CAVEAT_UTIL = (
    "Without GPM (pre-Hopper GPUs) utilisation is NVML's kernel-running share, which counts a "
    "GPU busy when any kernel ran; idle hours are then a lower bound."
)


def idle_findings(
    gpus: Sequence[GpuUsage], window: Window, settings: FindingsSettings, prices: PriceBook
) -> list[Finding]:
    """Held-but-idle and empty-idle findings per deployment (or per host for GPUs with no
    deployment), and recurring daily idle patterns across GPUs."""
    findings = []
    findings += _idle_by_scope(gpus, window, settings, prices, held=True)
    findings += _idle_by_scope(gpus, window, settings, prices, held=False)
    findings += idle_patterns(gpus, window, settings, prices)
    return findings


def _scope_of(gpu: GpuUsage) -> Scope:
    if gpu.deployment:
        return Scope(ScopeKind.DEPLOYMENT, gpu.deployment, gpu.cluster)
    return Scope(ScopeKind.HOST, gpu.host, gpu.cluster)


def _idle_by_scope(
    gpus: Sequence[GpuUsage], window: Window, settings: FindingsSettings, prices: PriceBook, *, held: bool
) -> list[Finding]:
    groups: dict[Scope, list[GpuUsage]] = defaultdict(list)
    for gpu in gpus:
        groups[_scope_of(gpu)].append(gpu)
    findings = []
    for scope, members in groups.items():
        finding = _idle_finding(scope, members, window, settings, prices, held=held)
        if finding is not None:
            findings.append(finding)
    return findings


def _idle_finding(
    scope: Scope,
    members: list[GpuUsage],
    window: Window,
    settings: FindingsSettings,
    prices: PriceBook,
    *,
    held: bool,
) -> Finding | None:
    reported_h = sum(g.minutes for g in members) / 60
    rows: list[dict[str, Any]] = []
    weekly = 0.0
    for g in members:
        idle_min = g.idle_held_minutes if held else g.idle_empty_minutes
        if idle_min <= 0:
            continue
        price = prices.per_hour(g.gpu_name, g.host)
        streaks = [s for s in g.streaks if s.minutes >= settings.streak_min_minutes]
        gpu_weekly = per_week(idle_min / 60 * price, window)
        weekly += gpu_weekly
        rows.append(
            {
                "gpu_uuid": g.gpu_uuid,
                "host": g.host,
                "gpu_name": g.gpu_name,
                "idle_gpu_hours": round(idle_min / 60, 2),
                "usd_per_gpu_hour": price,
                "usd_per_week": round(gpu_weekly, 2),
                "streaks": len(streaks),
                "longest_streak_hours": round(max((s.minutes for s in streaks), default=0) / 60, 2),
                "has_gpm": g.has_gpm,
            }
        )
    if not rows or reported_h <= 0:
        return None
    idle_h = sum((g.idle_held_minutes if held else g.idle_empty_minutes) for g in members) / 60
    share = idle_h / reported_h
    if share < settings.idle_min_share or weekly < settings.min_weekly_usd:
        return None
    rows.sort(key=lambda r: -r["usd_per_week"])
    by_host: dict[str, float] = defaultdict(float)
    for r in rows:
        by_host[r["host"]] += r["idle_gpu_hours"]
    streak_count = sum(r["streaks"] for r in rows)
    longest = max(r["longest_streak_hours"] for r in rows)
    what = "held memory but computed nothing" if held else "had nothing loaded and sat idle"
    title = (
        f"{scope.id}: {len(rows)} of {len(members)} GPUs {what} for {idle_h:,.1f} GPU-hours "
        f"({share:.0%} of their time), {usd(weekly)}/week"
    )
    evidence = {
        "gpus": len(members),
        "idle_gpus": len(rows),
        "reported_gpu_hours": round(reported_h, 2),
        "idle_gpu_hours": round(idle_h, 2),
        "idle_share": round(share, 4),
        "usd_per_week": round(weekly, 2),
        "idle_threshold_pct": settings.idle_threshold_pct,
        "held_memory_mib": settings.held_memory_mib,
        "streaks_at_least_min": streak_count,
        "streak_min_minutes": settings.streak_min_minutes,
        "longest_streak_hours": longest,
        "by_host": {h: round(v, 2) for h, v in sorted(by_host.items())},
        "by_gpu": rows[:MAX_LISTED_GPUS],
    }
    if held:
        recommendation = (
            "These GPUs keep a model loaded while no request runs: scale the deployment down in "
            "idle periods (scale-to-zero or fewer replicas), or share the GPUs (MIG, time-slicing) "
            "with a deployment that has work."
        )
    else:
        recommendation = (
            "Nothing runs on these GPUs: release them (stop or resize the instances) or schedule "
            "work onto them."
        )
    caveats = [_CAVEAT_UTIL] if not all(r["has_gpm"] for r in rows) else []
    caveats.append("A GPU costs its hourly price whether busy or not; dollars are idle hours × that price.")
    return Finding(
        kind="idle_held" if held else "idle_empty",
        severity=severity_for(weekly, settings),
        scope=scope,
        window=window,
        title=title,
        evidence=evidence,
        query=QUERY,
        weekly_usd=weekly,
        effect=Effect.SAVING,
        recommendation=recommendation,
        caveats=tuple(caveats),
    )


# --- hour-of-day × weekday pattern -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DailyIdle:
    """A GPU idle from `start` to `start + hours` (hours of day, may wrap midnight) on
    every day of `days`."""

    days: str
    weekdays: tuple[int, ...]
    start: int
    hours: int

    @property
    def label(self) -> str:
        if self.hours >= 24:
            return f"all day {self.days}"
        return f"{hhmm(self.start)}–{hhmm((self.start + self.hours) % 24 or 24)} {self.days}"


def _idle_cells(gpu: GpuUsage, min_share: float) -> set[int]:
    """The weekday × hour cells the GPU reported in and sat idle in (≥ min_share of the
    cell's minutes)."""
    reported_in = gpu.reported_cells
    if min_share <= 0:
        return {cell for cell, reported in reported_in.items() if reported > 0}
    # A cell with no idle minute is below any positive share: only the idle ones are tried.
    return {
        cell
        for cell, idle in gpu.idle_cells.items()
        if idle > 0 and (reported := reported_in.get(cell, 0)) > 0 and idle / reported >= min_share
    }


def _runs(hours: set[int]) -> Iterable[tuple[int, int]]:
    """Maximal runs of consecutive hours (wrapping midnight) as (start, length)."""
    if len(hours) == 24:
        yield 0, 24
        return
    for h in sorted(hours):
        if (h - 1) % 24 in hours:
            continue
        length = 1
        while (h + length) % 24 in hours:
            length += 1
        yield h, length


def daily_idle_periods(gpu: GpuUsage, settings: FindingsSettings) -> list[DailyIdle]:
    """The daily idle periods of one GPU: hours whose cell is idle (≥ pattern_min_share of
    its minutes) on every day of a day group, every day of the group observed. A period
    that holds every day is not repeated as a weekday or weekend one."""
    found: list[DailyIdle] = []
    idle = _idle_cells(gpu, settings.pattern_min_share)
    if not idle:
        return found
    taken: set[int] = set()
    for label, days in DAY_GROUPS:
        hours = {hour for hour in range(24) if all(d * 24 + hour in idle for d in days)}
        if label == "every day":
            taken = hours
        else:
            hours -= taken
        for start, length in _runs(hours):
            if length >= settings.pattern_min_hours:
                found.append(DailyIdle(label, days, start, length))
    return found


def idle_patterns(
    gpus: Sequence[GpuUsage], window: Window, settings: FindingsSettings, prices: PriceBook
) -> list[Finding]:
    """One finding per recurring daily idle period shared by GPUs of one cluster:
    "idle 01:00–07:00 every day: 3 GPUs, $377/week". Weekly dollars = Σ over the GPUs of
    price × hours × days a week the period recurs (7, 5 or 2)."""
    groups: dict[tuple[str, DailyIdle], list[GpuUsage]] = defaultdict(list)
    for gpu in gpus:
        for period in daily_idle_periods(gpu, settings):
            groups[(gpu.cluster, period)].append(gpu)
    findings = []
    for (cluster, period), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1].label)):
        hours = min(period.hours, 24)
        weekly = sum(prices.per_hour(g.gpu_name, g.host) * hours * len(period.weekdays) for g in members)
        if weekly < settings.min_weekly_usd:
            continue
        deployments = {g.deployment for g in members}
        hosts = {g.host for g in members}
        if len(deployments) == 1 and "" not in deployments:
            scope = Scope(ScopeKind.DEPLOYMENT, next(iter(deployments)), cluster)
        elif len(hosts) == 1:
            scope = Scope(ScopeKind.HOST, next(iter(hosts)), cluster)
        else:
            scope = Scope(ScopeKind.CLUSTER, cluster, cluster)
        title = (
            f"idle {period.label}: {len(members)} GPU{'s' if len(members) != 1 else ''}, {usd(weekly)}/week"
        )
        evidence = {
            "days": period.days,
            "start_hour": period.start,
            "hours": hours,
            "timezone": settings.timezone,
            "gpus": len(members),
            "gpu_uuids": sorted(g.gpu_uuid for g in members)[:MAX_LISTED_GPUS],
            "hosts": sorted(hosts)[:MAX_LISTED_GPUS],
            "deployments": sorted(d for d in deployments if d),
            "gpu_hours_per_week": hours * len(period.weekdays) * len(members),
            "usd_per_week": round(weekly, 2),
            "pattern_min_share": settings.pattern_min_share,
            "window_days": round(window.seconds / 86400, 2),
        }
        findings.append(
            Finding(
                kind="idle_pattern",
                severity=severity_for(weekly, settings),
                scope=scope,
                window=window,
                title=title,
                evidence=evidence,
                query=QUERY,
                weekly_usd=weekly,
                effect=Effect.SAVING,
                recommendation=(
                    f"Scale these GPUs down on a schedule ({period.label}, {settings.timezone}) — a "
                    "cron-driven replica count or scale-to-zero — and back up before the period ends."
                ),
                caveats=(
                    "The same idle hours are counted in the idle_held / idle_empty findings: do not add "
                    "the dollars together.",
                    "A pattern needs every day of its group observed in the window; use a window of a "
                    "week or more.",
                ),
                key=f"{period.days}:{period.start}:{period.hours}",
            )
        )
    return findings
