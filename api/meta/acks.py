"""Finding acknowledgements and snoozes, keyed by the finding's stable fingerprint.

An acknowledged finding no longer alerts and leaves the weekly email's top list (its
dollars still count in the totals); a snoozed one does the same until `until`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.errors import BadRequest
from api.meta.common import Input, Output, Page, bounded, delete_or_404, page_of
from api.meta.db import utcnow
from api.meta.models import FindingAck


class AckIn(Input):
    fingerprint: Annotated[str, Field(min_length=1, max_length=128)]
    action: Literal["ack", "snooze"] = "ack"
    until: datetime | None = Field(
        None, description="snooze: when the finding may alert again (with a time zone)"
    )
    note: Annotated[str, Field(max_length=2000)] = ""
    created_by: Annotated[str, Field(max_length=200)] = ""

    @model_validator(mode="after")
    def _until_fits_action(self) -> AckIn:
        if self.action == "snooze":
            if self.until is None:
                raise ValueError("a snooze needs `until`")
            if self.until.tzinfo is None:
                raise ValueError("`until` needs a time zone (e.g. 2025-01-31T09:00:00Z)")
        elif self.until is not None:
            raise ValueError("an acknowledgement has no `until`; use action=snooze")
        return self


class AckOut(Output):
    fingerprint: str
    action: str
    until: datetime | None
    note: str
    created_by: str
    created_at: datetime


def set_ack(session: Session, data: AckIn, *, now: datetime | None = None) -> AckOut:
    """Acknowledge or snooze a finding (replacing an earlier ack or snooze of it)."""
    now = now or utcnow()
    if data.until is not None and data.until <= now:
        raise BadRequest(
            "`until` is in the past", details={"problems": [{"where": "until", "problem": "in the past"}]}
        )
    row = session.get(FindingAck, data.fingerprint)
    if row is None:
        row = FindingAck(fingerprint=data.fingerprint)
        session.add(row)
    row.action, row.until, row.note, row.created_by, row.created_at = (
        data.action,
        data.until,
        data.note,
        data.created_by,
        now,
    )
    session.flush()
    return AckOut.model_validate(row)


def delete_ack(session: Session, fingerprint: str) -> None:
    delete_or_404(session, FindingAck, fingerprint, "acknowledgement of finding")


def list_acks(session: Session, *, limit: int = 100, offset: int = 0) -> Page[AckOut]:
    rows = session.scalars(
        select(FindingAck).order_by(FindingAck.created_at.desc()).limit(bounded(limit) + 1).offset(offset)
    )
    return page_of([AckOut.model_validate(r) for r in rows], limit, offset)


def muted_fingerprints(session: Session, *, now: datetime | None = None) -> set[str]:
    """Fingerprints acknowledged, or snoozed past `now`."""
    now = now or utcnow()
    rows = session.scalars(
        select(FindingAck.fingerprint).where(or_(FindingAck.action == "ack", FindingAck.until > now))
    )
    return set(rows)
