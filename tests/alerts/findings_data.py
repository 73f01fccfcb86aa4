"""Findings built by hand for the alert and report tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.findings.model import Effect, Finding, Scope, ScopeKind, Severity
from api.timewindow import Window

END = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
WEEK = Window(END - timedelta(days=7), END)


def finding(
    kind: str = "idle_held",
    *,
    usd: float = 500.0,
    scope_id: str = "chat",
    scope: ScopeKind = ScopeKind.DEPLOYMENT,
    cluster: str = "prod",
    effect: Effect = Effect.SAVING,
    severity: Severity = Severity.MEDIUM,
    title: str | None = None,
    fix: str = "Scale the deployment down when idle. Then check again.",
    key: str = "",
) -> Finding:
    return Finding(
        kind=kind,
        severity=severity,
        scope=Scope(scope, scope_id, cluster),
        window=WEEK,
        title=title or f"{scope_id}: {kind} worth ${usd:,.0f}/week",
        evidence={"usd_per_week": usd},
        query="test.hand_built",
        weekly_usd=usd,
        effect=effect,
        recommendation=fix,
        key=key,
    )
