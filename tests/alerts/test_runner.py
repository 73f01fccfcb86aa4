"""Alert rules end to end without a store: findings handed in, states in the metadata
database, deliveries to a real HTTP server. Fires once, stays quiet, resolves once —
across a restart too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.alerts.delivery import Deliverer, RetryPolicy
from api.alerts.notify import delivery_recorder
from api.alerts.runner import dispatch, run_finding_rules
from api.findings.model import Effect
from api.meta import Meta
from api.meta.alert_rules import AlertRuleIn, create_rule
from api.meta.alert_states import list_states
from api.meta.webhooks import WebhookIn, create_webhook, list_deliveries
from api.settings import Settings
from tests.alerts.findings_data import finding
from tests.alerts.receiver import receiving

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAST = RetryPolicy(timeout_s=5, deadline_s=30, max_attempts=3, backoff_s=0.01, max_backoff_s=0.05)
SECRET = "whsec_runner-test-0123456789"


def _evaluate(
    meta: Meta, settings: Settings, found: list, now: datetime, muted: set[str] | None = None
) -> int:
    """One evaluation by a fresh 'process' (new deliverer), delivered and drained."""
    deliverer = Deliverer(FAST, delivery_recorder(meta))
    try:
        summary = run_finding_rules(meta, settings, found, muted or set(), now)
        dispatch(deliverer, summary)
        assert deliverer.join(10)
        return summary.transitions
    finally:
        deliverer.close()


def test_a_finding_fires_once_and_resolves_once_across_restarts(sqlite_meta: Meta, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url="https://iw.example.com/")
    big = finding(
        "idle_held", usd=1340.0, scope_id="chat", title="chat: 6 GPUs idle holding the model, $1,340/week"
    )
    small = finding("idle_empty", usd=40.0, scope_id="n7", title="n7: idle")
    latency = finding("fleet_undersized", usd=0.0, effect=Effect.NONE, title="chat: TTFT over SLO")
    with receiving() as rx:
        with sqlite_meta.session() as s:
            hook = create_webhook(s, WebhookIn(name="ops", url=rx.url, secret=SECRET))
            create_rule(
                s,
                AlertRuleIn(
                    name="money", kind="finding", threshold=100, severity="critical", webhook_ids=[hook.id]
                ),
            )

        assert _evaluate(sqlite_meta, settings, [big, small, latency], T0) == 1
        (fired,) = rx.wait_for(1)
        assert _evaluate(sqlite_meta, settings, [big, small, latency], T0 + timedelta(minutes=15)) == 0
        assert _evaluate(sqlite_meta, settings, [big], T0 + timedelta(minutes=30)) == 0
        assert _evaluate(sqlite_meta, settings, [], T0 + timedelta(minutes=45)) == 1
        arrivals = rx.wait_for(2)
        assert _evaluate(sqlite_meta, settings, [], T0 + timedelta(minutes=60)) == 0
        assert _evaluate(sqlite_meta, settings, [small], T0 + timedelta(minutes=75)) == 0
        assert len(rx.arrivals) == 2

    first, resolved = (json.loads(a.body) for a in arrivals)
    assert (first["type"], first["status"], first["severity"]) == ("finding", "firing", "critical")
    assert first["title"] == "chat: 6 GPUs idle holding the model, $1,340/week ($1,340/week saving)"
    assert first["subject"] == f"finding/{big.fingerprint}"
    assert first["finding"]["id"] == big.fingerprint and first["finding"]["weekly_usd"] == 1340.0
    assert first["links"]["subject"] == f"https://iw.example.com/findings/{big.fingerprint}"
    assert first["fired_at"] == "2026-03-02T09:00:00Z" and first["resolved_at"] is None
    assert (resolved["status"], resolved["subject"], resolved["title"]) == (
        "resolved",
        first["subject"],
        first["title"],
    )
    assert resolved["fired_at"] == first["fired_at"] and resolved["resolved_at"] == "2026-03-02T09:45:00Z"
    assert resolved["id"] != first["id"]

    with sqlite_meta.session() as s:
        log = list_deliveries(s, webhook_id=hook.id).items
        assert [(d.alert_status, d.status) for d in log] == [
            ("resolved", "delivered"),
            ("firing", "delivered"),
        ]
        assert list_states(s, status="firing").items == []
        assert [a.subject for a in list_states(s, status="resolved").items] == [first["subject"]]


def test_an_acknowledged_finding_neither_fires_nor_resolves(sqlite_meta: Meta, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    big = finding(usd=900.0)
    with receiving() as rx:
        with sqlite_meta.session() as s:
            create_webhook(s, WebhookIn(name="ops", url=rx.url, secret=SECRET))
            create_rule(s, AlertRuleIn(name="money", kind="finding", threshold=100))  # no webhooks named: all
        assert _evaluate(sqlite_meta, settings, [big], T0, muted={big.fingerprint}) == 0
        assert _evaluate(sqlite_meta, settings, [big], T0 + timedelta(minutes=15)) == 1  # un-muted: fires
        assert (
            _evaluate(sqlite_meta, settings, [big], T0 + timedelta(minutes=30), muted={big.fingerprint}) == 0
        )
        assert len(rx.wait_for(1)) == 1


def test_a_finding_rule_can_name_a_kind_and_a_deployment(sqlite_meta: Meta, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with sqlite_meta.session() as s:
        create_rule(
            s,
            AlertRuleIn(
                name="chat idle", kind="finding", threshold=10, finding_kind="idle_held", deployment="chat"
            ),
        )
    found = [
        finding("idle_held", scope_id="chat"),
        finding("idle_held", scope_id="embed"),
        finding("fleet_oversized", scope_id="chat"),
    ]
    summary = run_finding_rules(sqlite_meta, settings, found, set(), T0)
    assert summary.transitions == 1 and summary.jobs == []  # no webhook configured: state only
    with sqlite_meta.session() as s:
        (state,) = list_states(s).items
    assert state.subject == f"finding/{found[0].fingerprint}"
