"""Scenarios through the real ingest path into chDB: telemetry posted as OTLP, rolled up by
the materialized views, read by the findings queries. Every expected figure is worked out
by hand in the test from the scenario's own numbers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.findings.engine import load_inputs, run_cost, run_findings
from api.findings.model import Finding
from api.findings.unit_cost import CostBy
from api.settings import Settings
from api.store import Store
from api.timewindow import Window
from tests.findings.feed import (
    GB,
    H100_PRICE,
    feed_engine,
    feed_gpus,
    feed_requests,
    rollups_cover_everything,
)

# Windows end at the last midnight (UTC): recent enough for the raw tables' 30-day TTL,
# and whole days so the hour-of-day pattern lines up.
END = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def by_kind(findings: list[Finding], kind: str) -> list[Finding]:
    return [f for f in findings if f.kind == kind]


def findings_both_ways(store: Store, settings: Settings, window: Window) -> list[Finding]:
    """The findings read from the minute rollups (the findings rollups' migration ran as the
    test began, after every hour of the scenario), then from the hourly and daily ones (the
    migration recorded as run long before): they must be the same."""
    from_minutes = run_findings(store, settings, window)
    rollups_cover_everything(store)
    from_hours = run_findings(store, settings, window)
    assert [rounded(f.to_dict()) for f in from_hours] == [rounded(f.to_dict()) for f in from_minutes]
    return from_hours


def rounded(value: Any) -> Any:
    """`value` with every float to 9 significant digits: sums taken in another order differ
    in the last bits."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def test_three_of_eight_gpus_idle_every_night_give_held_idle_and_a_daily_pattern(
    client: TestClient, store: Store, settings: Settings
) -> None:
    start = END - timedelta(days=7)
    gpus = [f"GPU-night-{i}" for i in range(8)]

    def util(i: int, m: int) -> int:
        hour = (m // 60) % 24
        return 0 if i < 3 and 1 <= hour < 7 else 60

    for host, members in (("node-a", gpus[:4]), ("node-b", gpus[4:])):
        offset = 0 if host == "node-a" else 4
        feed_gpus(
            client,
            host=host,
            deployment="chat",
            gpus=members,
            start=start,
            minutes=7 * 1440,
            util=lambda i, m, o=offset: util(i + o, m),
            mem_used=lambda i, m: 70 * GB,
        )
    window = Window(start, END)
    findings = findings_both_ways(store, settings, window)

    # By hand: 3 GPUs × 6 h × 7 nights idle, model loaded → held, $2.99 per GPU-hour, 1 week.
    idle_gpu_hours = 3 * 6 * 7
    held = by_kind(findings, "idle_held")
    assert len(held) == 1 and held[0].scope.id == "chat"
    assert held[0].evidence["idle_gpu_hours"] == pytest.approx(idle_gpu_hours)
    assert held[0].evidence["reported_gpu_hours"] == pytest.approx(8 * 7 * 24)
    assert held[0].weekly_usd == pytest.approx(idle_gpu_hours * H100_PRICE)
    assert held[0].evidence["streaks_at_least_min"] == 3 * 7  # one 6-hour streak per GPU per night
    assert held[0].evidence["longest_streak_hours"] == pytest.approx(6)
    assert not by_kind(findings, "idle_empty")

    pattern = by_kind(findings, "idle_pattern")
    assert len(pattern) == 1
    assert pattern[0].title.startswith("idle 01:00–07:00 every day: 3 GPUs")
    assert pattern[0].weekly_usd == pytest.approx(3 * 6 * 7 * H100_PRICE)
    assert sorted(pattern[0].evidence["gpu_uuids"]) == gpus[:3]

    # Sizing by hand (5-minute buckets, target 70 %, 15-minute scale-down delay = 3 buckets):
    # day: 8 GPUs × 60 % = 4.8 busy → ceil(4.8 / 0.7) = 7 replicas → 1 spare;
    # night: 5 × 60 % = 3.0 → ceil(4.29) = 5 → 3 spare, except the first 3 night buckets,
    # when the simulated autoscaler still holds 7 (1 spare).
    day_buckets, night_buckets = 18 * 12, 6 * 12
    spare_per_day = (day_buckets + 3) * 1 + (night_buckets - 3) * 3
    saved_gpu_hours = 7 * spare_per_day * 5 / 60
    over = by_kind(findings, "fleet_oversized")
    assert len(over) == 1
    assert over[0].evidence["saved_gpu_hours"] == pytest.approx(saved_gpu_hours)
    assert over[0].weekly_usd == pytest.approx(saved_gpu_hours * H100_PRICE)
    assert all(f.evidence and f.query for f in findings)


def test_six_replicas_whose_demand_needs_two_are_over_sized(
    client: TestClient, store: Store, settings: Settings
) -> None:
    start = END - timedelta(hours=2)
    gpus = [f"GPU-six-{i}" for i in range(6)]
    # First hour 10 % each (0.6 busy GPUs → 1 replica), second hour 20 % (1.2 → 2 replicas).
    feed_gpus(
        client,
        host="node-s",
        deployment="summarise",
        gpus=gpus,
        start=start,
        minutes=120,
        util=lambda i, m: 10 if m < 60 else 20,
        mem_used=lambda i, m: 60 * GB,
    )
    window = Window(start, END)
    findings = findings_both_ways(store, settings, window)

    over = by_kind(findings, "fleet_oversized")
    assert len(over) == 1
    ev = over[0].evidence
    # Scale-to-demand: 12 buckets keep 1 replica (5 spare), 12 keep 2 (4 spare); 1 bucket = 1/12 h.
    saved = (12 * 5 + 12 * 4) / 12
    assert ev["needed_replicas_max"] == 2
    assert ev["saved_gpu_hours"] == pytest.approx(saved)
    assert ev["static_replicas"] == 2
    assert ev["static_saved_gpu_hours"] == pytest.approx(24 * 4 / 12)
    weeks = 2 / 168
    assert over[0].weekly_usd == pytest.approx(saved * H100_PRICE / weeks)
    assert not by_kind(findings, "idle_held")  # 10–20 % is work, not idle

    cost = run_cost(store, settings, window, CostBy.DEPLOYMENT)
    assert [line.key for line in cost] == ["summarise"]
    assert cost[0].usd == pytest.approx(6 * 2 * H100_PRICE)
    assert cost[0].util_mean_pct == pytest.approx(15)


def test_decode_heavy_batch_one_chat_is_a_speculative_decoding_candidate(
    client: TestClient, store: Store, settings: Settings
) -> None:
    start = END - timedelta(hours=1)
    gpu = ["GPU-chat-0"]
    feed_gpus(
        client,
        host="node-c",
        deployment="assistant",
        gpus=gpu,
        start=start,
        minutes=60,
        util=lambda i, m: 90,
        mem_used=lambda i, m: 72 * GB,
    )
    # One request at a time, back to back every 3 s: 400 tokens decoded at 7 ms each.
    feed_requests(
        client,
        host="node-c",
        deployment="assistant",
        gpus=gpu,
        model="meta-llama/Llama-3.1-8B-Instruct",
        starts_s=[3 * k for k in range(1200)],
        start=start,
        queue=0.0,
        ttft=0.2,
        prefill=0.15,
        decode=2.793,
        e2e=3.0,
        prompt=300,
        output=400,
    )
    findings = findings_both_ways(store, settings, Window(start, END))

    spec = by_kind(findings, "speculative_candidate")
    assert len(spec) == 1
    ev = spec[0].evidence
    # Leviathan et al. with the defaults α = 0.6, γ = 4, c = 0.05:
    s = (1 - 0.6**5) / ((1 - 0.6) * (4 * 0.05 + 1))
    assert ev["speedup"] == pytest.approx(s, abs=1e-4)
    assert ev["decode_bound_share"] == pytest.approx(1.0)
    assert ev["concurrency"] == pytest.approx(1.0, abs=0.01)
    assert ev["e2e_mean_after_s"] == pytest.approx(3.0 - 2.793 * (1 - 1 / s), abs=1e-3)

    # 8B bf16 on one H100: floor = 16 GB / 3.35 TB/s = 4.776 ms; measured 2.793 / 399 = 7.0 ms.
    quant = by_kind(findings, "quantisation")
    assert len(quant) == 1
    floor = 8e9 * 2 / 3.35e12
    tpot = 2.793 / 399
    fp8 = quant[0].evidence["options"][0]
    assert quant[0].evidence["floor_s"] == pytest.approx(floor, rel=1e-3)
    assert fp8["name"] == "FP8"
    assert fp8["tpot_s"] == pytest.approx(tpot - floor / 2, rel=0.02)
    assert fp8["freed_gb_per_replica"] == pytest.approx(8.0)
    assert any("quality" in c for c in quant[0].caveats)


def test_kv_saturated_deployment_with_preemptions_is_under_sized(
    client: TestClient, store: Store, settings: Settings
) -> None:
    start = END - timedelta(hours=1)
    gpus = ["GPU-kv-0", "GPU-kv-1"]
    feed_gpus(
        client,
        host="node-k",
        deployment="batch-kv",
        gpus=gpus,
        start=start,
        minutes=60,
        util=lambda i, m: 95,
        mem_used=lambda i, m: 76 * GB,
    )
    for n in range(len(gpus)):
        feed_engine(
            client,
            host="node-k",
            deployment="batch-kv",
            instance=f"pod-{n}",
            start=start,
            minutes=60,
            every_s=15,
            gauges={
                "vllm:kv_cache_usage_perc": 0.98,
                "vllm:num_requests_running": 16.0,
                "vllm:num_requests_waiting": 8.0,
            },
            counters={"vllm:num_preemptions": lambda k: 100 + k},
        )
    feed_requests(
        client,
        host="node-k",
        deployment="batch-kv",
        gpus=gpus[:1],
        model="Qwen2.5-32B-Instruct",
        starts_s=[10 * k for k in range(300)],
        start=start,
        queue=0.5,
        ttft=0.9,
        prefill=0.3,
        decode=6.0,
        e2e=7.0,
        prompt=1000,
        output=300,
    )
    findings = findings_both_ways(store, settings, Window(start, END))

    under = by_kind(findings, "fleet_undersized")
    assert len(under) == 1
    ev = under[0].evidence
    samples = 60 * 60 // 15
    assert ev["preemptions"] == pytest.approx(2 * (samples - 1))  # counter +1 per sample, 2 replicas
    assert ev["kv_saturated_share"] == pytest.approx(1.0)
    # load = (running + waiting) / running = 24 / 16; needed = ceil(2 × 1.5 / 0.7) = 5.
    assert ev["replicas_needed"] == math.ceil(2 * 1.5 / 0.7) == 5
    assert under[0].weekly_usd == pytest.approx(3 * H100_PRICE * 168)
    assert under[0].severity.value == "high"
    assert not by_kind(findings, "fleet_oversized")
    quant = by_kind(findings, "quantisation")
    assert len(quant) == 1 and quant[0].evidence["memory_starved"] is True


def test_memory_held_without_compute_is_reported_apart_from_an_empty_gpu(
    client: TestClient, store: Store, settings: Settings
) -> None:
    start = END - timedelta(hours=6)
    feed_gpus(
        client,
        host="node-h",
        deployment="",
        gpus=["GPU-held", "GPU-empty"],
        start=start,
        minutes=360,
        util=lambda i, m: 0,
        mem_used=lambda i, m: 40 * GB if i == 0 else 300_000_000,
        procs=lambda i, m: i == 0,
    )
    findings = findings_both_ways(store, settings, Window(start, END))
    weeks = 6 / 168
    held, empty = by_kind(findings, "idle_held"), by_kind(findings, "idle_empty")
    assert len(held) == 1 and len(empty) == 1
    assert held[0].evidence["by_gpu"][0]["gpu_uuid"] == "GPU-held"
    assert empty[0].evidence["by_gpu"][0]["gpu_uuid"] == "GPU-empty"
    for f in (held[0], empty[0]):
        assert f.evidence["idle_gpu_hours"] == pytest.approx(6)
        assert f.weekly_usd == pytest.approx(6 * H100_PRICE / weeks)
    assert not by_kind(findings, "idle_pattern")  # six hours cannot show a daily pattern


def test_a_busy_well_sized_deployment_produces_no_finding(
    client: TestClient, store: Store, settings: Settings
) -> None:
    start = END - timedelta(minutes=30)
    gpus = [f"GPU-steady-{i}" for i in range(4)]
    # 4 GPUs at 65 %: 2.6 busy GPUs → ceil(2.6 / 0.7) = 4 replicas needed = 4 provisioned.
    feed_gpus(
        client,
        host="node-b",
        deployment="steady",
        gpus=gpus,
        start=start,
        minutes=30,
        util=lambda i, m: 65,
        mem_used=lambda i, m: 70 * GB,
    )
    for n in range(4):
        feed_engine(
            client,
            host="node-b",
            deployment="steady",
            instance=f"pod-{n}",
            start=start,
            minutes=30,
            every_s=15,
            gauges={
                "vllm:kv_cache_usage_perc": 0.5,
                "vllm:num_requests_running": 8.0,
                "vllm:num_requests_waiting": 0.0,
            },
            counters={"vllm:num_preemptions": lambda k: 3},
        )
    feed_requests(
        client,
        host="node-b",
        deployment="steady",
        gpus=gpus[:1],
        model="mistral-large-instruct",
        starts_s=[2 * k for k in range(900)],
        start=start,
        queue=0.01,
        ttft=0.3,
        prefill=0.25,
        decode=5.97,
        e2e=6.3,
        prompt=500,
        output=200,
    )
    window = Window(start, END)
    # The deployment is fully seen (so "no finding" is a verdict, not missing data) …
    (dep,) = load_inputs(store, settings, window).deployments
    assert (dep.name, dep.gpus, dep.gpus_per_replica) == ("steady", 4, 1)
    assert dep.traffic is not None and dep.traffic.requests == 900
    assert dep.concurrency == pytest.approx(8.0)
    assert dep.fleet is not None and dep.fleet.gpus.max() == 4
    # … and nothing about it needs changing.
    assert run_findings(store, settings, window) == []

    response = client.get("/api/v1/findings", params={"window": "30m", "end": END.isoformat()})
    assert response.status_code == 200
    assert response.json()["total"] == 0
