"""`Finding`: what every finding kind returns, and the small helpers they share."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from api.findings.settings import FindingsSettings
from api.timewindow import Window


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class ScopeKind(StrEnum):
    GPU = "gpu"
    HOST = "host"
    DEPLOYMENT = "deployment"
    CLUSTER = "cluster"


class Effect(StrEnum):
    """What `weekly_usd` means: money the change saves, money it costs (adding replicas to
    meet an SLO), or none (a latency finding; `weekly_usd` is 0)."""

    SAVING = "saving"
    COST = "cost"
    NONE = "none"


SEVERITY_ORDER = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2, Severity.INFO: 3}


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    id: str
    cluster: str = ""

    def __str__(self) -> str:
        return f"{self.kind.value} {self.id}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing to change, with the figures that show it.

    `evidence` holds the numbers the finding was computed from (JSON-able values) and
    `query` names the store query that produced them; a finding without either is refused.
    `key` tells apart findings of one kind on one scope (e.g. two idle patterns) and enters
    the fingerprint, which stays the same from one run to the next so a finding can be
    acknowledged and deduplicated.
    """

    kind: str
    severity: Severity
    scope: Scope
    window: Window
    title: str
    evidence: Mapping[str, Any]
    query: str
    weekly_usd: float
    effect: Effect
    recommendation: str
    caveats: tuple[str, ...] = ()
    key: str = ""
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.evidence:
            raise ValueError(f"a {self.kind} finding needs its evidence figures")
        if not self.query:
            raise ValueError(f"a {self.kind} finding needs the name of the query behind its evidence")
        if not math.isfinite(self.weekly_usd) or self.weekly_usd < 0:
            raise ValueError("weekly_usd must be a finite amount ≥ 0 (its sign lives in `effect`)")
        raw = "|".join((self.kind, self.scope.cluster, self.scope.kind.value, self.scope.id, self.key))
        object.__setattr__(self, "fingerprint", hashlib.sha256(raw.encode()).hexdigest()[:16])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.fingerprint,
            "kind": self.kind,
            "severity": self.severity.value,
            "scope": {"kind": self.scope.kind.value, "id": self.scope.id, "cluster": self.scope.cluster},
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
            "title": self.title,
            "evidence": dict(self.evidence),
            "query": self.query,
            "weekly_usd": round(self.weekly_usd, 2),
            "effect": self.effect.value,
            "recommendation": self.recommendation,
            "caveats": list(self.caveats),
        }


def severity_for(weekly_usd: float, settings: FindingsSettings) -> Severity:
    if weekly_usd >= settings.severity_high_usd:
        return Severity.HIGH
    if weekly_usd >= settings.severity_medium_usd:
        return Severity.MEDIUM
    return Severity.LOW


def per_week(amount: float, window: Window) -> float:
    """An amount accrued over `window` scaled to one week."""
    return amount / window.weeks if window.seconds > 0 else 0.0


def usd(amount: float) -> str:
    """`1340.2` → `$1,340`; below $10 keeps cents."""
    return f"${amount:,.2f}" if abs(amount) < 10 else f"${amount:,.0f}"


def hhmm(hour: int) -> str:
    return f"{hour % 24:02d}:00" if hour != 24 else "24:00"


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first, then the most dollars, then a stable order."""
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], -f.weekly_usd, f.kind, f.fingerprint))


def iso(value: datetime) -> str:
    return value.isoformat()
