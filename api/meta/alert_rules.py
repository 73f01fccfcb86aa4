"""Alert rules: what to watch, for how long, and which webhooks to tell.

Kinds (docs/alerts.md has the details):
- `finding`: a new finding worth at least `threshold` dollars a week (optionally of one
  `finding_kind`).
- `gpu_idle`: a GPU below `threshold` % utilisation, with no request in flight, in each of
  the last `for_minutes` minutes.
- `slo_ttft` / `slo_itl`: a deployment's TTFT / inter-token p95 above its SLO in each of the
  last `for_minutes` minutes (the SLO is the deployment's, so no threshold).
- `kv_cache`: an engine's mean KV-cache use at or above `threshold` % in each of the last
  `for_minutes` minutes.
- `collector_silent`: a host that sent GPU samples within the last week but none for
  `for_minutes` minutes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import BadRequest
from api.meta.alert_states import forget_rule_states
from api.meta.common import Input, Output, Page, bounded, delete_or_404, flush_unique, get_or_404, page_of
from api.meta.models import AlertRule, Webhook

RuleKind = Literal["finding", "gpu_idle", "slo_ttft", "slo_itl", "kv_cache", "collector_silent"]
Severity = Literal["info", "warning", "critical"]

DEFAULT_THRESHOLDS: dict[str, float | None] = {
    "finding": 100.0,
    "gpu_idle": 5.0,
    "kv_cache": 95.0,
    "slo_ttft": None,
    "slo_itl": None,
    "collector_silent": None,
}
THRESHOLD_RANGES: dict[str, tuple[float, float, str]] = {
    "finding": (0.0, 10_000_000.0, "dollars a week"),
    "gpu_idle": (0.0, 100.0, "percent utilisation"),
    "kv_cache": (1.0, 100.0, "percent KV-cache use"),
}
Label = Annotated[str, Field(max_length=255)]


class AlertRuleIn(Input):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: RuleKind
    enabled: bool = True
    severity: Severity = "warning"
    threshold: float | None = Field(
        None,
        description="finding: $/week; gpu_idle: utilisation %; kv_cache: KV-cache use %; "
        "others: none. Empty: the kind's default",
    )
    for_minutes: Annotated[int, Field(ge=1, le=1440)] = Field(
        10, description="Minutes the condition must hold (ignored by finding rules)"
    )
    cluster: Label = Field("", description="Only this cluster; empty: all")
    deployment: Label = Field("", description="Only this deployment; empty: all")
    host: Label = Field("", description="Only this host (gpu_idle, collector_silent, kv_cache); empty: all")
    finding_kind: Annotated[str, Field(max_length=64)] = Field(
        "", description="finding rules: only this kind"
    )
    webhook_ids: Annotated[list[Annotated[int, Field(ge=1, le=2**63 - 1)]], Field(max_length=100)] = Field(
        default_factory=list, description="Webhooks to notify; empty: every enabled webhook"
    )

    @model_validator(mode="after")
    def _threshold_fits_kind(self) -> AlertRuleIn:
        if self.finding_kind and self.kind != "finding":
            raise ValueError("finding_kind applies to finding rules only")
        if self.kind in ("slo_ttft", "slo_itl", "collector_silent"):
            if self.threshold is not None:
                raise ValueError(f"{self.kind} rules take no threshold")
            return self
        if self.threshold is None:
            self.threshold = DEFAULT_THRESHOLDS[self.kind]
        low, high, unit = THRESHOLD_RANGES[self.kind]
        if self.threshold is None or not low <= self.threshold <= high:
            raise ValueError(f"threshold for {self.kind} is {unit}, between {low:g} and {high:g}")
        return self


class AlertRuleOut(Output):
    id: int
    name: str
    kind: str
    enabled: bool
    severity: str
    threshold: float | None
    for_minutes: int
    cluster: str
    deployment: str
    host: str
    finding_kind: str
    webhook_ids: list[int]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: AlertRule) -> AlertRuleOut:
        fields = {k: getattr(row, k) for k in cls.model_fields if k != "webhook_ids"}
        return cls(**fields, webhook_ids=sorted(w.id for w in row.webhooks))


def _webhooks(session: Session, ids: list[int]) -> list[Webhook]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    found = list(session.scalars(select(Webhook).where(Webhook.id.in_(wanted))))
    missing = sorted(set(wanted) - {w.id for w in found})
    if missing:
        raise BadRequest(
            f"no webhook with id {', '.join(map(str, missing))}",
            details={"problems": [{"where": "webhook_ids", "problem": "unknown webhook"}]},
        )
    return found


def list_rules(session: Session, *, limit: int = 100, offset: int = 0) -> Page[AlertRuleOut]:
    rows = session.scalars(
        select(AlertRule).order_by(AlertRule.name).limit(bounded(limit) + 1).offset(offset)
    )
    return page_of([AlertRuleOut.of(r) for r in rows], limit, offset)


def enabled_rules(session: Session) -> list[AlertRuleOut]:
    rows = session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id))
    return [AlertRuleOut.of(r) for r in rows]


def get_rule(session: Session, rule_id: int) -> AlertRuleOut:
    return AlertRuleOut.of(get_or_404(session, AlertRule, rule_id, "alert rule"))


def create_rule(session: Session, data: AlertRuleIn) -> AlertRuleOut:
    row = AlertRule(**data.model_dump(exclude={"webhook_ids"}))
    row.webhooks = _webhooks(session, data.webhook_ids)
    session.add(row)
    flush_unique(session, f"an alert rule named {data.name!r} exists")
    return AlertRuleOut.of(row)


def update_rule(session: Session, rule_id: int, data: AlertRuleIn) -> AlertRuleOut:
    """Replace a rule. Changing what it watches (kind or scope) forgets its alert state,
    so that old subjects neither linger nor send stray 'resolved' messages."""
    row = get_or_404(session, AlertRule, rule_id, "alert rule")
    values = data.model_dump(exclude={"webhook_ids"})
    if any(getattr(row, k) != values[k] for k in ("kind", "cluster", "deployment", "host", "finding_kind")):
        forget_rule_states(session, rule_id)
    for key, value in values.items():
        setattr(row, key, value)
    row.webhooks = _webhooks(session, data.webhook_ids)
    flush_unique(session, f"an alert rule named {data.name!r} exists")
    return AlertRuleOut.of(row)


def delete_rule(session: Session, rule_id: int) -> None:
    delete_or_404(session, AlertRule, rule_id, "alert rule")
