"""What a webhook receives: the event as inferwatch JSON or as a Slack message, and the
signature over it. Pure functions; docs/alerts.md shows the payload and how to verify."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

from api.alerts.model import Status

SIGNATURE_HEADER = "X-Inferwatch-Signature"
TIMESTAMP_HEADER = "X-Inferwatch-Timestamp"
EVENT_HEADER = "X-Inferwatch-Event"
DELIVERY_HEADER = "X-Inferwatch-Delivery"
PAYLOAD_VERSION = 1

EventType = Literal["alert", "finding", "test"]


@dataclass(frozen=True, slots=True)
class Event:
    """One thing to tell webhooks: an alert (or finding alert) firing or resolved, or a test."""

    type: EventType
    status: Status
    title: str
    subject: str
    severity: str
    at: datetime
    fired_at: datetime
    resolved_at: datetime | None = None
    value: float | None = None
    rule_id: int | None = None
    rule_name: str = ""
    rule_kind: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    finding: Mapping[str, Any] | None = None

    @property
    def id(self) -> str:
        """The same for every delivery of this event (a receiver can drop repeats by it)."""
        raw = "|".join((self.type, str(self.rule_id), self.subject, self.status, self.fired_at.isoformat()))
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the webhook's secret over `"<timestamp>.<body>"`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (docs/alerts.md has the same in a few lines without inferwatch)."""
    try:
        expected = sign(secret, int(timestamp), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, signature)


def subject_link(base_url: str, event: Event) -> str:
    """The dashboard page that shows the subject of the event."""
    base = base_url.rstrip("/")
    labels = event.labels
    if event.type == "finding" and labels.get("fingerprint"):
        return f"{base}/findings/{quote(labels['fingerprint'], safe='')}"
    if labels.get("deployment") and event.rule_kind in ("slo_ttft", "slo_itl", "kv_cache"):
        return f"{base}/deployments/{quote(labels['deployment'], safe='')}"
    if labels.get("host"):
        return f"{base}/fleet?{urlencode({'host': labels['host']})}"
    return f"{base}/"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def inferwatch_payload(event: Event, base_url: str) -> dict[str, Any]:
    return {
        "version": PAYLOAD_VERSION,
        "id": event.id,
        "type": event.type,
        "status": event.status,
        "severity": event.severity,
        "title": event.title,
        "subject": event.subject,
        "value": event.value,
        "rule": {"id": event.rule_id, "name": event.rule_name, "kind": event.rule_kind}
        if event.rule_id is not None
        else None,
        "labels": dict(event.labels),
        "fired_at": _iso(event.fired_at),
        "resolved_at": _iso(event.resolved_at),
        "sent_at": _iso(event.at),
        "links": {"dashboard": base_url.rstrip("/") + "/", "subject": subject_link(base_url, event)},
        "finding": dict(event.finding) if event.finding is not None else None,
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(event: Event, base_url: str) -> dict[str, Any]:
    """A Slack incoming-webhook message (`text` for notifications, `blocks` for the channel)."""
    mark = {"firing": ":red_circle: FIRING", "resolved": ":large_green_circle: RESOLVED"}[event.status]
    if event.type == "test":
        mark = ":white_check_mark: TEST"
    title = _slack_escape(event.title)
    link = subject_link(base_url, event)
    context = " · ".join(
        _slack_escape(part)
        for part in (event.rule_name and f"rule {event.rule_name}", event.severity, event.subject)
        if part
    )
    return {
        "text": f"{mark.split(' ', 1)[1]}: {event.title}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{mark}* <{link}|{title}>"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context or "inferwatch"}]},
        ],
    }


def render(event: Event, base_url: str, format: str) -> bytes:
    """The body to POST, as compact UTF-8 JSON."""
    payload = slack_payload(event, base_url) if format == "slack" else inferwatch_payload(event, base_url)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
