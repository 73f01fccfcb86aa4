"""Six simulated hours through the real ingest path: every span and data point accepted,
every row labelled simulated."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from api.demo import SIMULATED_CLUSTER, DemoInfo
from api.demo.feed import feed
from api.demo.simulate import Window
from api.demo.week import SimulatedWeek
from api.settings import Settings
from api.store import Query, Store
from tests.demo.common import SEED

COUNT = {
    table: Query(f"test.demo.count_{table}", f"SELECT count() FROM {table}")
    for table in ("requests", "gpu_samples", "engine_metrics")
}
FRAMEWORKS = Query(
    "test.demo.frameworks", "SELECT deployment, framework FROM requests GROUP BY deployment, framework"
)
PHASE_GAP = Query(
    "test.demo.phase_gap",
    "SELECT max(abs(ttft_s - queue_s - prefill_s)) FROM requests WHERE deployment = {deployment:String}",
)
GPU_DEPLOYMENTS = Query("test.demo.gpu_deployments", "SELECT groupUniqArray(deployment) FROM gpu_samples")
CLUSTERS = Query(
    "test.demo.clusters",
    "SELECT groupUniqArray(cluster) FROM (SELECT cluster FROM requests UNION ALL "
    "SELECT cluster FROM gpu_samples UNION ALL SELECT cluster FROM engine_metrics)",
)


def six_recent_evening_hours() -> Window:
    """Yesterday 18:00–24:00 UTC: chat, the evening tail and a nightly batch job (recent, so
    no TTL drops it)."""
    today = int(time.time()) // 86_400 * 86_400
    return Window(today - 86_400 + 18 * 3600, 360)


def test_six_simulated_hours_are_ingested_with_no_rejections(client: TestClient, store: Store) -> None:
    week = SimulatedWeek(SEED, six_recent_evening_hours())
    stats = feed(client, week.batches(), workers=1)
    assert stats.rejected == 0, stats.reasons
    assert stats.spans == week.span_count() > 5000
    assert stats.points == week.point_count()
    assert store.scalar(COUNT["requests"]) == week.span_count()
    assert store.scalar(COUNT["gpu_samples"]) == len(week.fleet.gpus) * 360
    assert store.scalar(COUNT["engine_metrics"]) == sum(e.series for e in week.engines.values()) * 360
    assert store.scalar(CLUSTERS) == [SIMULATED_CLUSTER]
    assert {(r["deployment"], r["framework"]) for r in store.rows(FRAMEWORKS)} == {
        ("chat-llama-70b", "vllm"),
        ("code-assistant-8b", "vllm"),
        ("batch-summarize", "sglang"),
        ("internal-rag", "vllm"),
        ("support-bot", "vllm"),
    }
    # the GPU nobody uses is filed under no deployment
    assert set(store.scalar(GPU_DEPLOYMENTS)) == {d.name for d in week.fleet.deployments} | {""}
    # SGLang counts the wait in its prefill time; once the ingest takes it out, the phases add up
    assert store.scalar(PHASE_GAP, deployment="batch-summarize") < 1e-6


def test_the_demo_app_says_it_is_the_demo(settings: Settings, store: Store) -> None:
    from api.commands.demo import build_app

    window = six_recent_evening_hours()
    info = DemoInfo(
        cluster=SIMULATED_CLUSTER,
        start=datetime.fromtimestamp(window.start_s, UTC),
        end=datetime.fromtimestamp(window.end_s, UTC),
        seed=SEED,
        gpu_interval_s=60,
    )
    app = build_app(settings, info, store=store)
    assert app.state.demo is info and app.state.demo.simulated
