"""The live alert conditions on real rollups: telemetry goes in through OTLP ingest into
chDB, the alert queries read the minute rollups, and the observations say who breaches.
Every expected answer is counted by hand from the minutes fed in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from api.alerts import conditions
from api.alerts.delivery import Deliverer, RetryPolicy
from api.alerts.notify import delivery_recorder
from api.alerts.runner import dispatch, observe_live, run_live_rules
from api.meta import Meta
from api.meta.alert_rules import AlertRuleIn, AlertRuleOut, create_rule
from api.meta.webhooks import WebhookIn, create_webhook
from api.settings import Settings
from api.store import Store
from api.store.sql.alerts import DEPLOYMENT_LATENCY
from tests.alerts.feed import gpu_minutes, kv_usage, requests_in
from tests.alerts.receiver import receiving

MIN = timedelta(minutes=1)
# Recent enough for the raw tables' TTL, on a whole hour so minutes line up.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2) + 30 * MIN
START = NOW.replace(second=0) - 10 * MIN  # the 10 whole minutes before NOW: START … START+9
MINUTES = [START + i * MIN for i in range(10)]


def rule(**values: Any) -> AlertRuleOut:
    data = AlertRuleIn(name="r", **values)
    now = datetime.now(UTC)
    return AlertRuleOut(
        id=1,
        webhook_ids=[],
        created_at=now,
        updated_at=now,
        **data.model_dump(exclude={"webhook_ids", "name"}),
        name="r",
    )


def breaching(observations: list[Any]) -> dict[str, bool | None]:
    return {o.subject: o.breaching for o in observations}


def test_gpu_idle_needs_every_minute_idle_and_no_request_in_flight(
    client: TestClient, store: Store, settings: Settings
) -> None:
    # A: idle all 10 minutes. B: idle, but requests run on it in minutes 4 and 5.
    # C: NVML says 0 % but GPM SM activity says 50 %: busy. D: one busy minute (80 %).
    # E on host n2: idle, but a request with no GPU named runs on n2 in minute 7.
    gpu_minutes(client, host="n1", uuid="GPU-A", index=0, starts=MINUTES, util=[1] * 10)
    gpu_minutes(client, host="n1", uuid="GPU-B", index=1, starts=MINUTES, util=[1] * 10)
    gpu_minutes(client, host="n1", uuid="GPU-C", index=2, starts=MINUTES, util=[0] * 10, sm=[50.0] * 10)
    gpu_minutes(client, host="n1", uuid="GPU-D", index=3, starts=MINUTES, util=[2] * 4 + [80] + [2] * 5)
    gpu_minutes(client, host="n2", uuid="GPU-E", index=0, starts=MINUTES, util=[0] * 10)
    requests_in(
        store,
        host="n1",
        deployment="chat",
        starts=[MINUTES[4]],
        per_minute=1,
        ttft=0.1,
        decode=70,
        output=100,
        gpus=("GPU-B",),
    )  # from 5 s into minute 4, 70.1 s long: minutes 4 and 5
    requests_in(
        store, host="n2", deployment="chat", starts=[MINUTES[7]], per_minute=1, ttft=0.1, decode=1, output=10
    )

    observed = observe_live(store, settings, rule(kind="gpu_idle", threshold=5, for_minutes=10), NOW)
    assert breaching(observed) == {
        "gpu/prod/n1/GPU-A": True,
        "gpu/prod/n1/GPU-B": False,
        "gpu/prod/n1/GPU-C": False,
        "gpu/prod/n1/GPU-D": False,
        "gpu/prod/n2/GPU-E": False,
    }
    # Over the last 4 minutes (6…9) B is idle again, E has minute 7 busy.
    short = observe_live(store, settings, rule(kind="gpu_idle", threshold=5, for_minutes=4), NOW)
    assert breaching(short)["gpu/prod/n1/GPU-B"] is True
    assert breaching(short)["gpu/prod/n2/GPU-E"] is False
    # A higher threshold makes D's 2 % minutes idle, but not its 80 % one; a host filter narrows.
    only_n1 = observe_live(
        store, settings, rule(kind="gpu_idle", threshold=90, for_minutes=10, host="n1"), NOW
    )
    assert set(breaching(only_n1)) == {
        "gpu/prod/n1/GPU-A",
        "gpu/prod/n1/GPU-B",
        "gpu/prod/n1/GPU-C",
        "gpu/prod/n1/GPU-D",
    }
    assert breaching(only_n1)["gpu/prod/n1/GPU-D"] is True  # 80 % < 90 %


def test_slo_breach_needs_p95_over_the_slo_in_every_minute(client: TestClient, store: Store) -> None:
    # chat: TTFT 1.5 s in all 10 minutes. batch: 1.5 s except minute 6 at 0.2 s.
    # ITL: chat decodes 201 tokens in 2 s (10 ms/token); batch in 20.1 s (100.5 ms/token).
    requests_in(
        store, host="n1", deployment="chat", starts=MINUTES, per_minute=20, ttft=1.5, decode=2.0, output=201
    )
    slow = [m for i, m in enumerate(MINUTES) if i != 6]
    requests_in(
        store, host="n1", deployment="batch", starts=slow, per_minute=20, ttft=1.5, decode=20.1, output=201
    )
    requests_in(
        store,
        host="n1",
        deployment="batch",
        starts=[MINUTES[6]],
        per_minute=20,
        ttft=0.2,
        decode=20.1,
        output=201,
    )
    rows = store.rows(DEPLOYMENT_LATENCY, since=START, until=NOW.replace(second=0), cluster="", deployment="")
    slos = {"chat": 0.8, "batch": 0.8}
    ttft = conditions.slo(rows, metric="ttft", slo_s=slos.get, for_minutes=10)
    assert breaching(ttft) == {"deployment/prod/chat": True, "deployment/prod/batch": False}
    chat = next(o for o in ttft if o.subject == "deployment/prod/chat")
    assert chat.value is not None and abs(chat.value - 1500) < 1
    itl = conditions.slo(rows, metric="itl", slo_s={"chat": 0.05, "batch": 0.05}.get, for_minutes=10)
    assert breaching(itl) == {"deployment/prod/chat": False, "deployment/prod/batch": True}
    # A deployment with no SLO is not watched.
    assert breaching(conditions.slo(rows, metric="ttft", slo_s={"chat": 0.8}.get, for_minutes=10)) == {
        "deployment/prod/chat": True
    }


def test_kv_cache_saturation_per_engine_instance(
    client: TestClient, store: Store, settings: Settings
) -> None:
    # i1 at 97 % every minute (two scrapes a minute); i2 the same but one minute at 50 % mean.
    full = [(m + timedelta(seconds=s), 0.97) for m in MINUTES for s in (10, 40)]
    kv_usage(client, host="n1", instance="i1", deployment="chat", points=full)
    dip = [
        (m + timedelta(seconds=s), 0.97 if i != 3 else 0.5) for i, m in enumerate(MINUTES) for s in (10, 40)
    ]
    kv_usage(client, host="n1", instance="i2", deployment="chat", points=dip)
    observed = observe_live(store, settings, rule(kind="kv_cache", threshold=95, for_minutes=10), NOW)
    assert breaching(observed) == {"engine/prod/chat/n1/i1": True, "engine/prod/chat/n1/i2": False}
    i1 = next(o for o in observed if o.subject.endswith("/i1"))
    assert i1.value is not None and abs(i1.value - 97) < 1e-6


def test_collector_silence_counts_from_the_end_of_the_last_minute_heard(
    client: TestClient, store: Store, settings: Settings
) -> None:
    gpu_minutes(
        client, host="quiet", uuid="GPU-Q", index=0, starts=[NOW.replace(second=0) - 30 * MIN], util=[5]
    )
    gpu_minutes(client, host="live", uuid="GPU-L", index=0, starts=[NOW.replace(second=0) - MIN], util=[5])
    observed = observe_live(store, settings, rule(kind="collector_silent", for_minutes=10), NOW)
    assert breaching(observed) == {"host/prod/quiet": True, "host/prod/live": False}
    quiet = next(o for o in observed if o.subject == "host/prod/quiet")
    assert quiet.value == 29.0  # last heard in the minute [NOW-30m, NOW-29m): silent since NOW-29m


def test_a_live_rule_fires_and_resolves_through_a_webhook(
    client: TestClient, store: Store, settings: Settings, sqlite_meta: Meta
) -> None:
    # GPU-A idle in minutes 0…9, busy in 10 and 11. At NOW (window 0…9) it fires; evaluated
    # again in the same minute it stays quiet; a minute later the window takes in the busy
    # minute 10 and it resolves, once.
    busy_after = MINUTES + [NOW, NOW + MIN]
    gpu_minutes(client, host="n1", uuid="GPU-A", index=0, starts=busy_after, util=[0] * 10 + [70, 70])
    with receiving() as rx:
        with sqlite_meta.session() as s:
            create_webhook(s, WebhookIn(name="ops", url=rx.url, secret="whsec_live-test-0123456789"))
            create_rule(s, AlertRuleIn(name="idle", kind="gpu_idle", for_minutes=10))
        deliverer = Deliverer(RetryPolicy(max_attempts=1), delivery_recorder(sqlite_meta))
        try:
            runs = []
            for offset in (15, 45, 75, 135):  # seconds after NOW, each run delivered before the next
                runs.append(run_live_rules(sqlite_meta, store, settings, NOW + timedelta(seconds=offset)))
                dispatch(deliverer, runs[-1])
                assert deliverer.join(10)
        finally:
            deliverer.close()
        assert [r.transitions for r in runs] == [1, 0, 1, 0]
    bodies = [json.loads(a.body) for a in rx.wait_for(2)]
    assert [(b["status"], b["subject"]) for b in bodies] == [
        ("firing", "gpu/prod/n1/GPU-A"),
        ("resolved", "gpu/prod/n1/GPU-A"),
    ]
    assert bodies[0]["labels"]["host"] == "n1" and bodies[0]["rule"]["kind"] == "gpu_idle"
