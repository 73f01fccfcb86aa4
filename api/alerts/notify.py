"""Glue between deliveries and the delivery log: the recorder a `Deliverer` calls, the
deliverer a server builds from settings, and the settings page's test-send."""

from __future__ import annotations

from dataclasses import replace

from api.alerts.delivery import Deliverer, Job, Outcome, Recorder, RetryPolicy
from api.alerts.payloads import Event, render
from api.alerts.settings import NotifySettings
from api.meta import Meta
from api.meta.db import utcnow
from api.meta.webhooks import DeliveryOut, finish_delivery, get_delivery, get_target, record_delivery


def delivery_recorder(meta: Meta) -> Recorder:
    """`record(job, outcome)`: writes a finished delivery to the log."""

    def record(job: Job, outcome: Outcome) -> None:
        with meta.session() as session:
            finish_delivery(
                session,
                job.delivery_id,
                status=outcome.result,
                attempts=outcome.attempts,
                response_status=outcome.response_status,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )

    return record


def make_deliverer(meta: Meta, notify: NotifySettings) -> Deliverer:
    return Deliverer(
        RetryPolicy.from_settings(notify), delivery_recorder(meta), workers=notify.webhook_workers
    )


def check_event() -> Event:
    now = utcnow()
    return Event(
        type="test",
        status="firing",
        title="Test message from inferwatch: this webhook works",
        subject="test",
        severity="info",
        at=now,
        fired_at=now,
    )


TEST_DEADLINE_S = 20.0


def send_test(meta: Meta, deliverer: Deliverer, webhook_id: int, base_url: str) -> DeliveryOut:
    """Send a test event to one webhook now and return its delivery-log entry. It retries as
    any delivery would, but gives up after TEST_DEADLINE_S at most: someone is waiting on
    the page. Raises NotFound for an unknown webhook."""
    with meta.session() as session:
        target = get_target(session, webhook_id)
        body = render(check_event(), base_url, target.format)
        delivery_id = record_delivery(
            session,
            webhook_id=target.id,
            event="test",
            alert_status="firing",
            payload=body.decode(),
            subject="test",
        )
    policy = replace(deliverer.policy, deadline_s=min(deliverer.policy.deadline_s, TEST_DEADLINE_S))
    deliverer.send_now(Job(delivery_id, target.url, target.secret, body, "test"), policy)
    with meta.session() as session:
        return get_delivery(session, delivery_id)
