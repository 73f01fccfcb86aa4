"""`/api/v1/settings/...`, `/api/v1/alerts`, `/api/v1/acknowledgements`, `/api/v1/jobs` on
the real app (chDB store, SQLite metadata database): the shapes, the validation, the
errors, and a test-send to a real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.alerts.settings import NotifySettings
from api.app import create_app
from api.settings import Settings
from api.store import Store
from tests.alerts.receiver import Reply, receiving

S = "/api/v1/settings"


@pytest.fixture
def api(settings: Settings, store: Store) -> Iterator[TestClient]:
    quiet = settings.model_copy(
        update={
            "notify": NotifySettings(scheduler_enabled=False, webhook_backoff_s=0.01),
            "public_url": "https://iw.example.com",
        }
    )
    with TestClient(create_app(quiet, store=store), client=("127.0.0.1", 50000)) as client:
        yield client


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def test_webhooks_show_the_secret_once_and_validate_in_place(api: TestClient) -> None:
    created = ok(api.post(f"{S}/webhooks", json={"name": "ops", "url": "https://hooks.example.com/a"}), 201)
    assert created["secret"].startswith("whsec_") and created["secret_hint"] == created["secret"][:4] + "…"
    listed = ok(api.get(f"{S}/webhooks"))
    assert listed["next_offset"] is None and "secret" not in listed["items"][0]

    bad = api.post(f"{S}/webhooks", json={"name": "", "url": "ftp://x.example.com", "format": "teams"})
    assert bad.status_code == 422
    problems = {p["where"] for p in bad.json()["error"]["details"]["problems"]}
    assert problems == {"body.name", "body.url", "body.format"}

    dup = api.post(f"{S}/webhooks", json={"name": "ops", "url": "https://hooks.example.com/b"})
    assert dup.status_code == 400
    assert dup.json() == {"error": {"code": "bad_request", "message": "a webhook named 'ops' exists"}}
    assert api.get(f"{S}/webhooks/999").json()["error"]["code"] == "not_found"


def test_deployments_and_alert_rules_round_trip(api: TestClient) -> None:
    dep = ok(
        api.post(f"{S}/deployments", json={"name": "chat", "ttft_p95_ms": 800, "gpus_per_replica": 4}), 201
    )
    assert (dep["ttft_p95_ms"], dep["itl_p95_ms"], dep["gpus_per_replica"]) == (800, None, 4)
    dep = ok(api.put(f"{S}/deployments/{dep['id']}", json={"name": "chat", "itl_p95_ms": 60}))
    assert (dep["ttft_p95_ms"], dep["itl_p95_ms"]) == (None, 60)

    hook = ok(api.post(f"{S}/webhooks", json={"name": "ops", "url": "https://hooks.example.com/a"}), 201)
    rule = ok(
        api.post(
            f"{S}/alert-rules",
            json={
                "name": "slow chat",
                "kind": "slo_ttft",
                "deployment": "chat",
                "for_minutes": 5,
                "webhook_ids": [hook["id"]],
            },
        ),
        201,
    )
    assert (rule["threshold"], rule["webhook_ids"], rule["severity"]) == (None, [hook["id"]], "warning")
    bad = api.post(f"{S}/alert-rules", json={"name": "x", "kind": "kv_cache", "threshold": 140})
    assert bad.status_code == 422 and "between 1 and 100" in bad.json()["error"]["message"]
    ok(api.delete(f"{S}/alert-rules/{rule['id']}"), 204)
    assert ok(api.get(f"{S}/alert-rules"))["items"] == []


def test_prices_tokens_schedule_and_recipients(api: TestClient) -> None:
    listed = {p["gpu_model"]: p for p in ok(api.get(f"{S}/prices"))["items"]}
    assert listed["h100-sxm"]["source"] == "default"
    ok(api.put(f"{S}/prices/h100-sxm", json={"usd_per_hour": 2.5}))
    assert {p["gpu_model"]: p for p in ok(api.get(f"{S}/prices"))["items"]}["h100-sxm"]["usd_per_hour"] == 2.5
    ok(api.delete(f"{S}/prices/h100-sxm"), 204)
    ok(api.post(f"{S}/host-prices", json={"match": "spot-*", "usd_per_hour": 0.9}), 201)

    token = ok(api.post(f"{S}/tokens", json={"scope": "read", "name": "grafana"}), 201)
    assert token["secret"].startswith("iwt_")
    listed_tokens = ok(api.get(f"{S}/tokens"))["items"]
    assert [t["prefix"] for t in listed_tokens] == [token["prefix"]] and "secret" not in listed_tokens[0]
    assert ok(api.delete(f"{S}/tokens/{token['id']}"))["revoked_at"] is not None

    assert ok(api.get(f"{S}/report/schedule")) == {
        "enabled": True,
        "day": "mon",
        "hour": 9,
        "timezone": "UTC",
        "source": "settings",
    }
    ok(api.put(f"{S}/report/schedule", json={"day": "fri", "hour": 16, "timezone": "Europe/Berlin"}))
    assert ok(api.get(f"{S}/report/schedule"))["source"] == "saved"
    ok(api.post(f"{S}/report/recipients", json={"email": "Lead@Example.com"}), 201)
    assert [r["email"] for r in ok(api.get(f"{S}/report/recipients"))["items"]] == ["lead@example.com"]


def test_lists_are_bounded(api: TestClient) -> None:
    assert api.get(f"{S}/deployments?limit=1001").status_code == 422
    for i in range(3):
        ok(api.post(f"{S}/deployments", json={"name": f"d{i}"}), 201)
    page = ok(api.get(f"{S}/deployments?limit=2"))
    assert [d["name"] for d in page["items"]] == ["d0", "d1"] and page["next_offset"] == 2
    assert [d["name"] for d in ok(api.get(f"{S}/deployments?limit=2&offset=2"))["items"]] == ["d2"]


def test_test_send_reaches_a_real_receiver_and_lands_in_the_delivery_log(api: TestClient) -> None:
    with receiving([Reply(503), Reply(200)]) as rx:
        hook = ok(api.post(f"{S}/webhooks", json={"name": "rx", "url": rx.url}), 201)
        delivery = ok(api.post(f"{S}/webhooks/{hook['id']}/test"))
        rx.wait_for(2)
    assert (delivery["status"], delivery["attempts"], delivery["response_status"]) == ("delivered", 2, 200)
    log = ok(api.get(f"{S}/webhooks/{hook['id']}/deliveries"))["items"]
    assert [d["id"] for d in log] == [delivery["id"]]
    assert api.post(f"{S}/webhooks/999/test").status_code == 404


def test_acknowledgements_alerts_and_jobs(api: TestClient) -> None:
    ack = ok(api.post("/api/v1/acknowledgements", json={"fingerprint": "abc123", "note": "known"}), 201)
    assert (ack["action"], ack["until"]) == ("ack", None)
    bad = api.post("/api/v1/acknowledgements", json={"fingerprint": "x", "action": "snooze"})
    assert bad.status_code == 422
    assert [a["fingerprint"] for a in ok(api.get("/api/v1/acknowledgements"))["items"]] == ["abc123"]
    ok(api.delete("/api/v1/acknowledgements/abc123"), 204)
    assert ok(api.get("/api/v1/alerts")) == {"items": [], "next_offset": None}
    assert ok(api.get("/api/v1/alerts?status=all"))["items"] == []
    assert ok(api.get("/api/v1/jobs")) == {"items": []}


def test_the_openapi_schema_carries_the_settings_models(api: TestClient) -> None:
    schema = ok(api.get("/openapi.json"))
    names = set(schema["components"]["schemas"])
    assert {
        "AlertRuleIn",
        "AlertRuleOut",
        "WebhookIn",
        "WebhookCreated",
        "DeliveryOut",
        "TokenCreated",
        "ScheduleIn",
        "DeploymentIn",
        "OverrideIn",
    } <= names
    assert "/api/v1/settings/webhooks/{webhook_id}/test" in schema["paths"]


def test_the_lifespan_starts_and_stops_the_scheduler(settings: Settings, store: Store) -> None:
    on = settings.model_copy(update={"notify": NotifySettings(scheduler_enabled=True)})
    app = create_app(on, store=store)
    assert app.state.background.scheduler is None  # nothing runs before the app starts
    with TestClient(app, client=("127.0.0.1", 50000)):
        scheduler = app.state.background.scheduler
        assert scheduler is not None and scheduler._thread is not None and scheduler._thread.is_alive()
    assert app.state.background.scheduler is None and not scheduler._thread.is_alive()
