"""Who gets the weekly email, and when it goes out (day, hour, time zone). Without a saved
schedule the settings' defaults apply (INFERWATCH_NOTIFY__REPORT_DAY/HOUR/TIMEZONE)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.alerts.settings import NotifySettings, Weekday, check_timezone
from api.meta.common import Input, Output, Page, bounded, delete_or_404, flush_unique, get_or_404, page_of
from api.meta.models import ReportRecipient, ReportSchedule

_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$")
SCHEDULE_ID = 1


def _check_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("not an email address")
    return value.lower()


EmailAddress = Annotated[str, Field(min_length=3, max_length=320), AfterValidator(_check_email)]


class RecipientIn(Input):
    email: EmailAddress
    name: Annotated[str, Field(max_length=200)] = ""
    enabled: bool = True


class RecipientOut(Output):
    id: int
    email: str
    name: str
    enabled: bool
    created_at: datetime


class ScheduleIn(Input):
    enabled: bool = True
    day: Weekday = Field(description="Weekday it goes out: mon … sun")
    hour: Annotated[int, Field(ge=0, le=23)] = Field(description="Local hour it goes out, 0–23")
    timezone: Annotated[str, Field(max_length=64), AfterValidator(check_timezone)] = Field(
        description="IANA time zone, e.g. Europe/Berlin"
    )


class ScheduleOut(Output):
    enabled: bool
    day: str
    hour: int
    timezone: str
    source: str = Field(description="saved, or settings (the defaults, nothing saved yet)")


def list_recipients(session: Session, *, limit: int = 100, offset: int = 0) -> Page[RecipientOut]:
    rows = session.scalars(
        select(ReportRecipient).order_by(ReportRecipient.email).limit(bounded(limit) + 1).offset(offset)
    )
    return page_of([RecipientOut.model_validate(r) for r in rows], limit, offset)


def enabled_addresses(session: Session) -> list[str]:
    rows = session.scalars(
        select(ReportRecipient.email).where(ReportRecipient.enabled.is_(True)).order_by(ReportRecipient.email)
    )
    return list(rows)


def create_recipient(session: Session, data: RecipientIn) -> RecipientOut:
    row = ReportRecipient(**data.model_dump())
    session.add(row)
    flush_unique(session, f"{data.email} is already a recipient")
    return RecipientOut.model_validate(row)


def update_recipient(session: Session, recipient_id: int, data: RecipientIn) -> RecipientOut:
    row = get_or_404(session, ReportRecipient, recipient_id, "recipient")
    for key, value in data.model_dump().items():
        setattr(row, key, value)
    flush_unique(session, f"{data.email} is already a recipient")
    return RecipientOut.model_validate(row)


def delete_recipient(session: Session, recipient_id: int) -> None:
    delete_or_404(session, ReportRecipient, recipient_id, "recipient")


def get_schedule(session: Session, defaults: NotifySettings) -> ScheduleOut:
    row = session.get(ReportSchedule, SCHEDULE_ID)
    if row is None:
        return ScheduleOut(
            enabled=True,
            day=defaults.report_day,
            hour=defaults.report_hour,
            timezone=defaults.report_timezone,
            source="settings",
        )
    return ScheduleOut(enabled=row.enabled, day=row.day, hour=row.hour, timezone=row.timezone, source="saved")


def set_schedule(session: Session, data: ScheduleIn) -> ScheduleOut:
    row = session.get(ReportSchedule, SCHEDULE_ID)
    if row is None:
        row = ReportSchedule(id=SCHEDULE_ID, **data.model_dump())
        session.add(row)
    else:
        for key, value in data.model_dump().items():
            setattr(row, key, value)
    session.flush()
    return ScheduleOut(**data.model_dump(), source="saved")
