"""Alert state per rule and subject, persisted so that a restart neither repeats a firing
message nor forgets to send a resolved one."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.alerts.model import AlertState
from api.meta.common import Output, Page, bounded, page_of
from api.meta.models import AlertRule
from api.meta.models import AlertState as AlertStateRow


class AlertStateOut(Output):
    rule_id: int
    rule_name: str
    subject: str
    status: str
    severity: str
    fired_at: datetime
    resolved_at: datetime | None
    value: float | None
    title: str
    labels: dict[str, str] = Field(default_factory=dict)


def _state(row: AlertStateRow) -> AlertState:
    return AlertState(
        subject=row.subject,
        status="firing" if row.status == "firing" else "resolved",
        fired_at=row.fired_at,
        resolved_at=row.resolved_at,
        value=row.value,
        title=row.title,
        labels=json.loads(row.labels or "{}"),
    )


def load_states(session: Session, rule_id: int) -> dict[str, AlertState]:
    rows = session.scalars(select(AlertStateRow).where(AlertStateRow.rule_id == rule_id))
    return {row.subject: _state(row) for row in rows}


def save_states(session: Session, rule_id: int, states: list[AlertState]) -> None:
    """Insert or update these states of one rule."""
    if not states:
        return
    existing = {
        row.subject: row
        for row in session.scalars(
            select(AlertStateRow).where(
                AlertStateRow.rule_id == rule_id, AlertStateRow.subject.in_([s.subject for s in states])
            )
        )
    }
    for state in states:
        row = existing.get(state.subject)
        if row is None:
            row = AlertStateRow(rule_id=rule_id, subject=state.subject)
            session.add(row)
        row.status = state.status
        row.fired_at = state.fired_at
        row.resolved_at = state.resolved_at
        row.value = state.value
        row.title = state.title[:2000]
        row.labels = json.dumps(dict(state.labels), sort_keys=True)
    session.flush()


def forget_rule_states(session: Session, rule_id: int) -> None:
    session.execute(delete(AlertStateRow).where(AlertStateRow.rule_id == rule_id))


def prune_resolved(session: Session, before: datetime) -> int:
    """Drop resolved states older than `before` (they carry nothing a restart needs)."""
    result = session.execute(
        delete(AlertStateRow).where(AlertStateRow.status == "resolved", AlertStateRow.resolved_at < before)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def list_states(
    session: Session,
    *,
    status: Literal["firing", "resolved"] | None = "firing",
    limit: int = 100,
    offset: int = 0,
) -> Page[AlertStateOut]:
    """Alerts, newest first; by default only those firing now."""
    query = select(AlertStateRow, AlertRule).join(AlertRule, AlertRule.id == AlertStateRow.rule_id)
    if status is not None:
        query = query.where(AlertStateRow.status == status)
    query = query.order_by(AlertStateRow.fired_at.desc(), AlertStateRow.id.desc())
    rows = session.execute(query.limit(bounded(limit) + 1).offset(offset)).all()
    items = [
        AlertStateOut(
            rule_id=rule.id,
            rule_name=rule.name,
            subject=row.subject,
            status=row.status,
            severity=rule.severity,
            fired_at=row.fired_at,
            resolved_at=row.resolved_at,
            value=row.value,
            title=row.title,
            labels=json.loads(row.labels or "{}"),
        )
        for row, rule in rows
    ]
    return page_of(items, limit, offset)
