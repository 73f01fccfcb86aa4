"""Webhook endpoints and their delivery log.

The signing secret is kept as given (it must be, to sign bodies); outputs show only its
first characters. A secret left empty at creation is generated and returned once.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.errors import BadRequest
from api.meta.common import Input, Output, Page, bounded, delete_or_404, flush_unique, get_or_404, page_of
from api.meta.db import utcnow
from api.meta.models import Webhook, WebhookDelivery

Format = Literal["inferwatch", "slack"]
DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _check_secret(value: str) -> str:
    if value and len(value) < 16:
        raise ValueError("must be at least 16 characters (or empty to generate one)")
    return value


Url = Annotated[
    str,
    Field(min_length=8, max_length=2000, description="http:// or https:// URL"),
    AfterValidator(_check_url),
]
Secret = Annotated[str, Field(max_length=200), AfterValidator(_check_secret)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class WebhookIn(Input):
    name: Name
    url: Url
    secret: Secret = Field(
        "", description="Signing secret (16 characters or more); empty: generate one (shown once)"
    )
    format: Format = Field("inferwatch", description="inferwatch: the JSON payload; slack: Slack-compatible")
    enabled: bool = True


class WebhookUpdate(Input):
    """A change to a webhook. The secret stays unless `secret` is given (see also `rotate_secret`)."""

    name: Name
    url: Url
    secret: Secret = Field("", description="A new signing secret; empty: keep the current one")
    format: Format = "inferwatch"
    enabled: bool = True


class WebhookOut(Output):
    id: int
    name: str
    url: str
    format: str
    enabled: bool
    secret_hint: str = Field(description="The first characters of the signing secret")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Webhook) -> WebhookOut:
        return cls(
            id=row.id,
            name=row.name,
            url=row.url,
            format=row.format,
            enabled=row.enabled,
            secret_hint=row.secret[:4] + "…",
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="The signing secret. Shown this once; store it where the receiver can read it"
    )


class Target(Output):
    """What a delivery needs to know about its webhook."""

    id: int
    name: str
    url: str
    secret: str
    format: str


class DeliveryOut(Output):
    id: int
    webhook_id: int
    event: str
    alert_status: str
    subject: str
    rule_id: int | None
    status: str
    attempts: int
    response_status: int | None
    error: str
    payload: str
    created_at: datetime
    finished_at: datetime | None
    duration_ms: float | None


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def list_webhooks(session: Session, *, limit: int = 100, offset: int = 0) -> Page[WebhookOut]:
    rows = session.scalars(select(Webhook).order_by(Webhook.name).limit(bounded(limit) + 1).offset(offset))
    return page_of([WebhookOut.of(r) for r in rows], limit, offset)


def get_webhook(session: Session, webhook_id: int) -> WebhookOut:
    return WebhookOut.of(get_or_404(session, Webhook, webhook_id, "webhook"))


def get_target(session: Session, webhook_id: int) -> Target:
    return Target.model_validate(get_or_404(session, Webhook, webhook_id, "webhook"))


def targets(session: Session, ids: list[int] | None = None) -> list[Target]:
    """Enabled webhooks: those with these ids, or every enabled one when `ids` is empty."""
    query = select(Webhook).where(Webhook.enabled.is_(True))
    if ids:
        query = query.where(Webhook.id.in_(ids))
    return [Target.model_validate(w) for w in session.scalars(query.order_by(Webhook.id))]


def create_webhook(session: Session, data: WebhookIn) -> WebhookCreated:
    secret = data.secret or new_secret()
    row = Webhook(name=data.name, url=data.url, secret=secret, format=data.format, enabled=data.enabled)
    session.add(row)
    flush_unique(session, f"a webhook named {data.name!r} exists")
    return WebhookCreated(**WebhookOut.of(row).model_dump(), secret=secret)


def update_webhook(session: Session, webhook_id: int, data: WebhookUpdate) -> WebhookOut:
    row = get_or_404(session, Webhook, webhook_id, "webhook")
    row.name, row.url, row.format, row.enabled = data.name, data.url, data.format, data.enabled
    if data.secret:
        row.secret = data.secret
    flush_unique(session, f"a webhook named {data.name!r} exists")
    return WebhookOut.of(row)


def rotate_secret(session: Session, webhook_id: int) -> WebhookCreated:
    row = get_or_404(session, Webhook, webhook_id, "webhook")
    row.secret = new_secret()
    session.flush()
    return WebhookCreated(**WebhookOut.of(row).model_dump(), secret=row.secret)


def delete_webhook(session: Session, webhook_id: int) -> None:
    delete_or_404(session, Webhook, webhook_id, "webhook")


# --- the delivery log ----------------------------------------------------------------------------


def record_delivery(
    session: Session,
    *,
    webhook_id: int,
    event: str,
    alert_status: str,
    payload: str,
    subject: str = "",
    rule_id: int | None = None,
) -> int:
    """A pending delivery; returns its id for `finish_delivery`."""
    row = WebhookDelivery(
        webhook_id=webhook_id,
        event=event,
        alert_status=alert_status,
        subject=subject[:500],
        rule_id=rule_id,
        payload=payload,
        status="pending",
    )
    session.add(row)
    session.flush()
    return row.id


def finish_delivery(
    session: Session,
    delivery_id: int,
    *,
    status: DeliveryStatus,
    attempts: int,
    response_status: int | None,
    error: str,
    duration_ms: float,
) -> None:
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:  # the webhook was deleted while its delivery ran
        return
    row.status = status
    row.attempts = attempts
    row.response_status = response_status
    row.error = error[:4000]
    row.duration_ms = duration_ms
    row.finished_at = utcnow()


def get_delivery(session: Session, delivery_id: int) -> DeliveryOut:
    return DeliveryOut.model_validate(get_or_404(session, WebhookDelivery, delivery_id, "delivery"))


def list_deliveries(
    session: Session,
    *,
    webhook_id: int | None = None,
    status: DeliveryStatus | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page[DeliveryOut]:
    """The delivery log, newest first."""
    query = select(WebhookDelivery)
    if webhook_id is not None:
        get_or_404(session, Webhook, webhook_id, "webhook")
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    rows = session.scalars(query.limit(bounded(limit) + 1).offset(offset))
    return page_of([DeliveryOut.model_validate(r) for r in rows], limit, offset)


def prune_deliveries(session: Session, before: datetime) -> int:
    """Forget deliveries created before `before`. Returns how many."""
    if before.tzinfo is None:
        raise BadRequest("before must be timezone-aware")
    result = session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
