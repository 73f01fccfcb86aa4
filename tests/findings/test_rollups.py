"""The hourly and daily findings rollups (migration 0003) against the minute rollups they
summarise, through the real ingest path: the same inputs whichever the findings read,
thresholds chosen at query time, minutes split across inserts counted once."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.findings.engine import load_inputs
from api.findings.inputs import EngineStats
from api.findings.settings import IDLE_THRESHOLD_MAX_PCT, KV_SATURATION_MIN, FindingsSettings
from api.settings import Settings
from api.store import Store
from api.store.migrate import load_migrations
from api.timewindow import Window
from tests.findings.feed import GB, feed_engine, feed_gpus, ns, post_ok, rollups_cover_everything
from tests.otlp import gpu_metrics_request, resource

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
START = END - timedelta(hours=3)


def with_findings(settings: Settings, **values: object) -> Settings:
    return settings.model_copy(update={"findings": FindingsSettings(**values)})


def test_the_caps_in_the_settings_are_the_ones_the_rollups_keep() -> None:
    # Minutes below 20 % keep their own figures, and KV usage from 0.8: thresholds beyond
    # those could not be answered from the hourly rollup.
    (migration,) = [m for m in load_migrations() if m.name == "findings"]
    assert f"util_peak_ >= {IDLE_THRESHOLD_MAX_PCT})" in migration.text
    assert f"util_peak_ < {IDLE_THRESHOLD_MAX_PCT})" in migration.text
    assert f"value_max >= {KV_SATURATION_MIN})" in migration.text
    with pytest.raises(ValueError):
        FindingsSettings(idle_threshold_pct=IDLE_THRESHOLD_MAX_PCT + 1)
    with pytest.raises(ValueError):
        FindingsSettings(kv_saturation=KV_SATURATION_MIN - 0.01)


def post_minutes(client: TestClient, util: dict[int, int], second: int) -> None:
    samples = [
        {
            "time_ns": ns(START + timedelta(minutes=m, seconds=second)),
            "uuid": "GPU-split",
            "index": 0,
            "util_gpu_pct": u,
            "mem_used_bytes": 40 * GB,
            "mem_total_bytes": 80 * GB,
        }
        for m, u in util.items()
    ]
    post_ok(client, "/v1/metrics", gpu_metrics_request(resource(host="node-x", deployment="batch"), samples))


def test_idle_thresholds_apply_at_query_time_and_split_minutes_count_once(
    client: TestClient, store: Store, settings: Settings
) -> None:
    # One sample a minute at second 10 with utilisation 0, 3, 8, 25 in turn; every eighth
    # minute (m % 8 = 1, at 3 %) a second sample, posted later, at 9 %: that minute's rows
    # are split across two inserts and its peak is 9.
    minutes = range(180)
    post_minutes(client, {m: (0, 3, 8, 25)[m % 4] for m in minutes}, second=10)
    post_minutes(client, {m: 9 for m in minutes if m % 8 == 1}, second=40)
    # Peaks per 8 minutes: 0, 9, 8, 25, 0, 3, 8, 25. Below 5 %: 3 of 8; below 10 %: 6 of 8.
    # 180 minutes = 22 cycles and minutes 0–3 of a 23rd (peaks 0, 9, 8, 25).
    expected = {5.0: 22 * 3 + 1, 10.0: 22 * 6 + 3}
    window = Window(START, END)
    by_path: dict[str, dict[float, object]] = {"minutes": {}, "hours": {}}
    for path in by_path:
        if path == "hours":
            rollups_cover_everything(store)
        for threshold, idle in expected.items():
            (gpu,) = load_inputs(store, with_findings(settings, idle_threshold_pct=threshold), window).gpus
            assert (gpu.minutes, gpu.idle_minutes, gpu.idle_held_minutes) == (180, idle, idle)
            by_path[path][threshold] = gpu
    assert by_path["hours"] == by_path["minutes"]
    # No minute holds 100 GB: with that threshold none is held.
    (gpu,) = load_inputs(store, with_findings(settings, held_memory_mib=100_000), window).gpus
    assert (gpu.idle_minutes, gpu.idle_held_minutes) == (expected[5.0], 0)


def test_a_counter_reset_inside_an_hour_and_kv_saturation_read_the_same_from_hours(
    client: TestClient, store: Store, settings: Settings
) -> None:
    # A scrape every 15 s for 3 hours (720 scrapes). The preemption counter counts scrapes
    # and restarts from 0 at scrape 300 (minute 75: inside the second hour); the KV cache is
    # at 0.85 for the first 240 scrapes (60 minutes), 0.99 for the next 120 (30), then 0.5.
    feed_engine(
        client,
        host="node-k",
        deployment="kv",
        instance="pod-0",
        start=START,
        minutes=180,
        every_s=15,
        gauges={"vllm:kv_cache_usage_perc": lambda k: 0.85 if k < 240 else 0.99 if k < 360 else 0.5},
        counters={"vllm:num_preemptions": lambda k: k if k < 300 else k - 300},
    )
    # A deployment is seen through its GPUs or its requests: one GPU, busy.
    feed_gpus(client, host="node-k", deployment="kv", gpus=["GPU-kv"], start=START, minutes=180,
              util=lambda i, m: 90, mem_used=lambda i, m: 70 * GB)  # fmt: skip
    window = Window(START, END)
    results = []
    for path in ("minutes", "hours"):
        if path == "hours":
            rollups_cover_everything(store)
        for saturation, minutes_saturated in ((0.8, 90), (0.9, 30), (0.995, 0)):
            (dep,) = load_inputs(store, with_findings(settings, kv_saturation=saturation), window).deployments
            kv, preemptions = dep.engine.get("kv_cache_usage"), dep.engine.get("preemptions")
            assert kv is not None and preemptions is not None
            assert (kv.minutes, kv.saturated) == (180, minutes_saturated)
            # 0 → 299 before the reset, 0 → 419 after it.
            assert preemptions.increase == pytest.approx(299 + 419)
            results.append(dep.engine)
    assert [figures(e) for e in results[3:]] == [approx(e) for e in results[:3]]


def figures(stats: EngineStats) -> dict[str, tuple[object, ...]]:
    return {name: astuple(m) for name, m in stats.metrics.items()}


def approx(stats: EngineStats) -> dict[str, object]:
    """Engine figures, equal up to the order floating-point sums were taken in."""
    return {name: pytest.approx(values) for name, values in figures(stats).items()}
