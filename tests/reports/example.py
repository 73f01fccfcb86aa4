"""A week of figures and findings built by hand, with the answers worked out beside them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from api.findings.model import Effect, ScopeKind, Severity
from api.reports.model import DayCost, WeekFigures, WeeklyInputs
from tests.alerts.findings_data import finding

START = datetime(2026, 3, 23, tzinfo=UTC)  # a Monday
END = START + timedelta(days=7)
BASE = "https://iw.example.com"

IDLE = [100.0, 200.0, 300.0, 400.0, 500.0, 500.0, 500.0]  # 2,500
SPEND = [1000.0] + [1500.0] * 6  # 10,000

HELD = finding(
    "idle_held",
    usd=1340.0,
    scope_id="chat",
    severity=Severity.HIGH,
    title="chat <prod> & co: 6 GPUs idle holding the model",
    fix="Scale the deployment down in idle periods. Or share the GPUs.",
)
PATTERN = finding(
    "idle_pattern",
    usd=900.0,
    scope_id="chat",
    severity=Severity.MEDIUM,
    key="weekdays:1:6",
    title="idle 01:00–07:00 on weekdays: 6 GPUs",
    fix="Scale down on a schedule.",
)
OVERSIZED = finding(
    "fleet_oversized",
    usd=612.40,
    scope_id="embed",
    title="embed: 4 replicas, 1.6 needed",
    fix="Autoscale on load with at least 1 replica.",
)
EMPTY = finding(
    "idle_empty",
    usd=50.0,
    scope_id="n7",
    scope=ScopeKind.HOST,
    title="n7: nothing loaded",
    fix="Release the GPUs.",
)
UNDERSIZED = finding(
    "fleet_undersized",
    usd=574.0,
    effect=Effect.COST,
    scope_id="code",
    title="code: TTFT over SLO",
    fix="Add 2 replicas at peak.",
)
SPECULATIVE = finding(
    "speculative_candidate",
    usd=0.0,
    effect=Effect.NONE,
    scope_id="chat",
    title="chat: decode-bound, try speculative decoding",
    fix="Try a draft model.",
)
FINDINGS = (HELD, PATTERN, OVERSIZED, EMPTY, UNDERSIZED, SPECULATIVE)


def inputs(*, top_n: int = 3, muted: frozenset[str] = frozenset({EMPTY.fingerprint})) -> WeeklyInputs:
    days = tuple(
        DayCost(date(2026, 3, 23) + timedelta(days=i), s, d)
        for i, (s, d) in enumerate(zip(SPEND, IDLE, strict=True))
    )
    this = WeekFigures(START, END, "UTC", 10_000.0, 2_500.0, 4_000.0, 1_000.0, days, FINDINGS)
    last = WeekFigures(START - timedelta(days=7), START, "UTC", 8_000.0, 2_000.0, 3_900.0, 950.0)
    return WeeklyInputs(this, last, BASE + "/", top_n=top_n, muted=muted)
