"""The metadata service modules on SQLite and PostgreSQL: validation, uniqueness, lookups,
and the values that come back — known answers worked out by hand."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from api.alerts.model import AlertState
from api.alerts.settings import NotifySettings
from api.errors import BadRequest, MetaError, NotFound
from api.findings.catalogue import PriceBook
from api.findings.settings import CostSettings, DeploymentProfile, FindingsSettings
from api.meta import Meta, acks, alert_rules, deployments, prices, recipients, tokens, users, webhooks
from api.meta.alert_states import load_states, save_states
from api.meta.common import parse
from api.meta.models import ApiToken, User
from api.meta.overlay import cost_with_configured, findings_with_configured

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- input validation ---------------------------------------------------------------------


def test_parse_names_every_bad_field_for_forms() -> None:
    with pytest.raises(BadRequest) as caught:
        parse(deployments.DeploymentIn, {"name": "", "ttft_p95_ms": "-5", "colour": "red"})
    wheres = {p["where"] for p in caught.value.details["problems"]}
    assert wheres == {"name", "ttft_p95_ms", "colour"}
    assert caught.value.status == 400


# --- prices --------------------------------------------------------------------------------


def test_a_set_price_replaces_the_catalogue_default_until_deleted(meta: Meta) -> None:
    with meta.session() as s:
        before = {p.gpu_model: p for p in prices.list_prices(s)}
        assert before["h100-sxm"].source == "default"
        default = before["h100-sxm"].usd_per_hour
        out = prices.set_price(s, prices.PriceIn(gpu_model="H100-SXM", usd_per_hour=2.10))
        assert (out.gpu_model, out.usd_per_hour, out.default_usd_per_hour) == ("h100-sxm", 2.10, default)
    with meta.session() as s:
        prices.set_price(s, prices.PriceIn(gpu_model="h100-sxm", usd_per_hour=2.20))  # replaces, no duplicate
        listed = {p.gpu_model: p for p in prices.list_prices(s)}
        assert (listed["h100-sxm"].usd_per_hour, listed["h100-sxm"].source) == (2.20, "configured")
        prices.delete_price(s, "h100-sxm")
        assert {p.gpu_model: p for p in prices.list_prices(s)}["h100-sxm"].usd_per_hour == default
        with pytest.raises(NotFound):
            prices.delete_price(s, "h100-sxm")


def test_saved_prices_win_in_the_findings_price_book(meta: Meta) -> None:
    env = CostSettings(gpu_prices={"H100-SXM": 3.00, "l4": 0.5}, host_prices={"gpu-7": 4.0})
    with meta.session() as s:
        prices.set_price(s, prices.PriceIn(gpu_model="h100-sxm", usd_per_hour=2.00))
        prices.create_override(s, prices.OverrideIn(match="spot-*", usd_per_hour=0.90))
        book = PriceBook(cost_with_configured(env, s))
    assert book.per_hour("NVIDIA H100 80GB HBM3") == 2.00  # saved beats the environment's 3.00
    assert book.per_hour("NVIDIA L4") == 0.5  # the environment's, nothing saved
    assert book.per_hour("NVIDIA H100 80GB HBM3", host="spot-12") == 0.90
    assert book.per_hour("NVIDIA H100 80GB HBM3", host="gpu-7") == 4.0


def test_host_price_patterns_are_a_prefix_and_one_star(meta: Meta) -> None:
    with pytest.raises(BadRequest):
        parse(prices.OverrideIn, {"match": "sp*t-*", "usd_per_hour": 1})
    with meta.session() as s:
        prices.create_override(s, prices.OverrideIn(match="gpu-node-07", usd_per_hour=1.5))
    with pytest.raises(BadRequest, match="already has a price"), meta.session() as s:
        prices.create_override(s, prices.OverrideIn(match="gpu-node-07", usd_per_hour=1.7))


# --- deployments ---------------------------------------------------------------------------


def test_deployments_are_unique_by_name_and_feed_the_findings_profiles(meta: Meta) -> None:
    with meta.session() as s:
        chat = deployments.create_deployment(
            s, deployments.DeploymentIn(name="chat", ttft_p95_ms=800, itl_p95_ms=50, gpus_per_replica=4)
        )
    with pytest.raises(BadRequest, match="already exists"), meta.session() as s:
        deployments.create_deployment(s, deployments.DeploymentIn(name="chat"))
    env = FindingsSettings(deployments={"chat": DeploymentProfile(params_b=70, gpus_per_replica=2)})
    with meta.session() as s:
        profile = findings_with_configured(env, s).profile("chat")
    # Saved SLOs in ms become seconds; saved GPUs per replica win; params_b stays from the env.
    assert (profile.ttft_p95_slo_s, profile.itl_p95_slo_s, profile.gpus_per_replica, profile.params_b) == (
        0.8,
        0.05,
        4,
        70,
    )
    with meta.session() as s:
        updated = deployments.update_deployment(
            s, chat.id, deployments.DeploymentIn(name="chat", ttft_p95_ms=500)
        )
        assert (updated.ttft_p95_ms, updated.gpus_per_replica) == (500, None)
        deployments.delete_deployment(s, chat.id)
        with pytest.raises(NotFound):
            deployments.get_deployment(s, chat.id)


def test_lists_are_bounded_and_paged(meta: Meta) -> None:
    with meta.session() as s:
        for i in range(5):
            deployments.create_deployment(s, deployments.DeploymentIn(name=f"d{i}"))
        first = deployments.list_deployments(s, limit=2)
        assert [d.name for d in first.items] == ["d0", "d1"] and first.next_offset == 2
        last = deployments.list_deployments(s, limit=2, offset=4)
        assert [d.name for d in last.items] == ["d4"] and last.next_offset is None
        with pytest.raises(BadRequest):
            deployments.list_deployments(s, limit=1001)


# --- alert rules ---------------------------------------------------------------------------


def test_rule_thresholds_default_by_kind_and_are_checked(meta: Meta) -> None:
    idle = alert_rules.AlertRuleIn(name="idle", kind="gpu_idle")
    kv = alert_rules.AlertRuleIn(name="kv", kind="kv_cache")
    finding = alert_rules.AlertRuleIn(name="money", kind="finding")
    assert (idle.threshold, kv.threshold, finding.threshold) == (5.0, 95.0, 100.0)
    with pytest.raises(BadRequest, match="take no threshold"):
        parse(alert_rules.AlertRuleIn, {"name": "slo", "kind": "slo_ttft", "threshold": 3})
    with pytest.raises(BadRequest, match="finding rules only"):
        parse(alert_rules.AlertRuleIn, {"name": "slo", "kind": "slo_ttft", "finding_kind": "idle_held"})
    with pytest.raises(BadRequest, match="between 1 and 100"):
        parse(alert_rules.AlertRuleIn, {"name": "kv", "kind": "kv_cache", "threshold": 120})
    with pytest.raises(BadRequest, match="no webhook with id 99"), meta.session() as s:
        alert_rules.create_rule(s, alert_rules.AlertRuleIn(name="x", kind="gpu_idle", webhook_ids=[99]))


def test_a_rule_names_its_webhooks_and_changing_what_it_watches_forgets_its_state(meta: Meta) -> None:
    with meta.session() as s:
        hook = webhooks.create_webhook(s, webhooks.WebhookIn(name="ops", url="https://hooks.example.com/x"))
        rule = alert_rules.create_rule(
            s, alert_rules.AlertRuleIn(name="idle", kind="gpu_idle", for_minutes=30, webhook_ids=[hook.id])
        )
        assert rule.webhook_ids == [hook.id]
        save_states(s, rule.id, [AlertState("gpu/a/b/c", "firing", T0)])
    with meta.session() as s:  # a new threshold keeps the state: the subjects are the same
        alert_rules.update_rule(
            s,
            rule.id,
            alert_rules.AlertRuleIn(name="idle", kind="gpu_idle", threshold=3, webhook_ids=[hook.id]),
        )
        assert set(load_states(s, rule.id)) == {"gpu/a/b/c"}
    with meta.session() as s:  # another cluster: other subjects, so the old state goes
        alert_rules.update_rule(
            s, rule.id, alert_rules.AlertRuleIn(name="idle", kind="gpu_idle", cluster="eu")
        )
        assert load_states(s, rule.id) == {}
    with meta.session() as s:
        webhooks.delete_webhook(s, hook.id)
        assert alert_rules.get_rule(s, rule.id).webhook_ids == []


def test_alert_states_round_trip_with_utc_times(meta: Meta) -> None:
    with meta.session() as s:
        rule = alert_rules.create_rule(s, alert_rules.AlertRuleIn(name="kv", kind="kv_cache"))
        save_states(
            s, rule.id, [AlertState("engine/p/chat/h/i", "firing", T0, None, 97.5, "KV full", {"host": "h"})]
        )
    with meta.session() as s:
        state = load_states(s, rule.id)["engine/p/chat/h/i"]
    assert state == AlertState("engine/p/chat/h/i", "firing", T0, None, 97.5, "KV full", {"host": "h"})
    assert state.fired_at.tzinfo is not None and state.fired_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(meta: Meta) -> None:
    with pytest.raises(MetaError), meta.session() as s:
        rule = alert_rules.create_rule(s, alert_rules.AlertRuleIn(name="kv", kind="kv_cache"))
        save_states(s, rule.id, [AlertState("x", "firing", datetime(2026, 1, 1))])


# --- webhooks ------------------------------------------------------------------------------


def test_webhook_secret_is_generated_shown_once_and_hinted_after(meta: Meta) -> None:
    with meta.session() as s:
        created = webhooks.create_webhook(s, webhooks.WebhookIn(name="ops", url="https://h.example.com/a"))
        assert created.secret.startswith("whsec_") and len(created.secret) > 40
        listed = webhooks.list_webhooks(s).items[0]
        assert listed.secret_hint == created.secret[:4] + "…"
        assert "secret" not in listed.model_dump()
        assert webhooks.get_target(s, created.id).secret == created.secret
        rotated = webhooks.rotate_secret(s, created.id)
        assert rotated.secret != created.secret


@pytest.mark.parametrize(
    ("field", "value"),
    [("url", "ftp://h.example.com/a"), ("url", "https://"), ("secret", "short"), ("format", "teams")],
)
def test_webhook_inputs_are_checked(field: str, value: str) -> None:
    data = {"name": "ops", "url": "https://h.example.com/a", field: value}
    with pytest.raises(BadRequest) as caught:
        parse(webhooks.WebhookIn, data)
    assert caught.value.details["problems"][0]["where"] == field


def test_delivery_log_is_newest_first_and_pruned_by_age(meta: Meta) -> None:
    with meta.session() as s:
        hook = webhooks.create_webhook(s, webhooks.WebhookIn(name="ops", url="https://h.example.com/a"))
        ids = [
            webhooks.record_delivery(s, webhook_id=hook.id, event="test", alert_status="firing", payload="{}")
            for _ in range(3)
        ]
        webhooks.finish_delivery(
            s, ids[0], status="delivered", attempts=2, response_status=200, error="", duration_ms=12.5
        )
    with meta.session() as s:
        log = webhooks.list_deliveries(s, webhook_id=hook.id)
        assert [d.id for d in log.items] == sorted(ids, reverse=True)
        first = webhooks.get_delivery(s, ids[0])
        assert (first.status, first.attempts, first.response_status) == ("delivered", 2, 200)
        assert webhooks.prune_deliveries(s, datetime.now(UTC) + timedelta(seconds=1)) == 3
        assert webhooks.list_deliveries(s).items == []


# --- report recipients and schedule -----------------------------------------------------------


def test_schedule_falls_back_to_settings_then_is_saved(meta: Meta) -> None:
    defaults = NotifySettings(report_day="fri", report_hour=16, report_timezone="Europe/Berlin")
    with meta.session() as s:
        first = recipients.get_schedule(s, defaults)
        assert (first.day, first.hour, first.timezone, first.source) == (
            "fri",
            16,
            "Europe/Berlin",
            "settings",
        )
        recipients.set_schedule(s, recipients.ScheduleIn(day="mon", hour=8, timezone="America/New_York"))
    with meta.session() as s:
        saved = recipients.get_schedule(s, defaults)
        assert (saved.day, saved.hour, saved.timezone, saved.source) == (
            "mon",
            8,
            "America/New_York",
            "saved",
        )
    with pytest.raises(BadRequest, match="unknown time zone"):
        parse(recipients.ScheduleIn, {"day": "mon", "hour": 8, "timezone": "Mars/Olympus"})


def test_recipients_are_lowercased_unique_and_only_enabled_ones_are_sent_to(meta: Meta) -> None:
    with meta.session() as s:
        recipients.create_recipient(s, recipients.RecipientIn(email="Lead@Example.com"))
        recipients.create_recipient(s, recipients.RecipientIn(email="cfo@example.com", enabled=False))
    with pytest.raises(BadRequest, match="already a recipient"), meta.session() as s:
        recipients.create_recipient(s, recipients.RecipientIn(email="lead@example.com"))
    with meta.session() as s:
        assert recipients.enabled_addresses(s) == ["lead@example.com"]
    with pytest.raises(BadRequest):
        parse(recipients.RecipientIn, {"email": "not-an-address"})


# --- tokens and users ----------------------------------------------------------------------


def test_tokens_are_stored_as_a_hash_and_a_prefix_only(meta: Meta) -> None:
    with meta.session() as s:
        created = tokens.create_token(s, tokens.TokenIn(scope="ingest", name="collectors"))
    secret = created.secret
    assert secret.startswith("iwt_") and created.prefix == secret[:12]
    with meta.session() as s:
        row = s.scalars(select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        stored = " ".join(str(v) for v in s.execute(text("SELECT * FROM api_tokens")).one())
    assert secret not in stored


def test_token_scopes_revocation_and_last_use(meta: Meta) -> None:
    with meta.session() as s:
        read = tokens.create_token(s, tokens.TokenIn(scope="read"))
        admin = tokens.create_token(s, tokens.TokenIn(scope="admin"))
    with meta.session() as s:
        assert tokens.authenticate_token(s, read.secret, "read", now=T0) is not None
        assert tokens.authenticate_token(s, read.secret, "ingest", now=T0) is None
        assert tokens.authenticate_token(s, admin.secret, "ingest", now=T0) is not None
        assert tokens.authenticate_token(s, read.secret + "x", "read", now=T0) is None
        assert tokens.find_token(s, read.prefix).id == read.id
    with meta.session() as s:
        assert tokens.find_token(s, str(read.id)).last_used_at == T0
        tokens.revoke_token(s, read.id)
        assert tokens.active_token_count(s) == 1
    with meta.session() as s:
        assert tokens.authenticate_token(s, read.secret, "read") is None
        assert [t.id for t in tokens.list_tokens(s, include_revoked=False).items] == [admin.id]


def test_users_sign_in_with_scrypt_hashed_passwords(meta: Meta) -> None:
    with meta.session() as s:
        user = users.create_user(s, users.UserIn(username="Ana", password="correct horse battery"))
    with meta.session() as s:
        stored = s.scalars(select(User)).one().password_hash
        assert stored.startswith("scrypt$16384$8$1$") and "correct horse" not in stored
        assert users.authenticate_user(s, "ana", "correct horse battery") is not None
        assert users.authenticate_user(s, "ana", "wrong horse battery") is None
        assert users.authenticate_user(s, "bob", "correct horse battery") is None
        users.set_role(s, user.id, "viewer", disabled=True)
        assert users.authenticate_user(s, "ana", "correct horse battery") is None
    with pytest.raises(BadRequest, match="at least 10"):
        parse(users.UserIn, {"username": "bob", "password": "short"})


# --- acknowledgements -----------------------------------------------------------------------


def test_acks_mute_for_good_and_snoozes_until_their_time(meta: Meta) -> None:
    with meta.session() as s:
        acks.set_ack(s, acks.AckIn(fingerprint="aaa"), now=T0)
        acks.set_ack(s, acks.AckIn(fingerprint="bbb", action="snooze", until=T0 + timedelta(hours=2)), now=T0)
        assert acks.muted_fingerprints(s, now=T0 + timedelta(hours=1)) == {"aaa", "bbb"}
        assert acks.muted_fingerprints(s, now=T0 + timedelta(hours=3)) == {"aaa"}
    with pytest.raises(BadRequest, match="needs `until`"):
        parse(acks.AckIn, {"fingerprint": "c", "action": "snooze"})
    with pytest.raises(BadRequest, match="in the past"), meta.session() as s:
        acks.set_ack(s, acks.AckIn(fingerprint="c", action="snooze", until=T0 - timedelta(minutes=1)), now=T0)
