"""The weekly report's inputs and its output, as plain values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from api.findings.model import Finding


@dataclass(frozen=True, slots=True)
class Email:
    """A message ready to send: both parts, and the links it carries (for tests and logs)."""

    subject: str
    html: str
    text: str
    links: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DayCost:
    """One local day: what its GPUs cost, and what their idle minutes cost."""

    day: date
    spend_usd: float
    idle_usd: float


@dataclass(frozen=True, slots=True)
class WeekFigures:
    """A week of the fleet. `start`/`end` are UTC; `days` are local days in `timezone`."""

    start: datetime
    end: datetime
    timezone: str
    spend_usd: float
    idle_usd: float
    gpu_hours: float
    idle_gpu_hours: float
    days: Sequence[DayCost] = ()
    findings: Sequence[Finding] = ()


@dataclass(frozen=True, slots=True)
class WeeklyInputs:
    """Everything the email shows. `muted` are fingerprints acknowledged or snoozed: they
    stay in the totals but leave the top list."""

    this_week: WeekFigures
    last_week: WeekFigures | None
    base_url: str
    top_n: int = 5
    muted: frozenset[str] = field(default_factory=frozenset)
    simulated: bool = False
