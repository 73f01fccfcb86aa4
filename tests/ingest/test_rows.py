"""What each kind of OTLP input becomes in the store, checked column by column, and
idempotence: a batch posted twice is stored once, rollups included."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from api.store import Query, Store
from tests.otlp import NS, attributes, gpu_metrics_request, post, resource, span, traces_request, vllm_span


def test_gpu_fields_of_one_tick_join_into_one_row(client: TestClient, store: Store) -> None:
    t = (time.time_ns() // NS - 300) * NS
    request = gpu_metrics_request(
        resource(host="node-9", deployment="chat", cluster="eu"),
        [
            {
                "time_ns": t,
                "uuid": "GPU-a",
                "index": 0,
                "name": "NVIDIA H100 80GB HBM3",
                "util_gpu_pct": 87,
                "util_mem_pct": 41,
                "mem_used_bytes": 70 * 2**30,
                "mem_total_bytes": 80 * 2**30,
                "power_mw": 612_345,
                "power_limit_mw": 700_000,
                "sm_clock_mhz": 1980,
                "temperature_c": 64,
                "sm_activity_pct": 71.5,
                "sm_occupancy_pct": 33.0,
                "dram_bw_pct": 55.25,
                "tensor_active_pct": 40.0,
                "energy_mj": 123_456_789,
                "procs": [(4242, 69 * 2**30, 85), (77, 2**20, 0)],
            },
            {"time_ns": t, "uuid": "GPU-b", "index": 1, "util_gpu_pct": 0, "mem_used_bytes": 0},
        ],
    )
    assert post(client, "/v1/metrics", request).status_code == 200
    rows = store.rows(Query("t.gpu", "SELECT * FROM gpu_samples ORDER BY gpu_uuid"))
    assert len(rows) == 2
    a, b = rows
    assert (a["cluster"], a["host"], a["deployment"], a["gpu_index"], a["gpu_name"]) == (
        "eu",
        "node-9",
        "chat",
        0,
        "NVIDIA H100 80GB HBM3",
    )
    assert a["time"].timestamp() == pytest.approx(t / NS)
    assert (a["util_gpu_pct"], a["util_mem_pct"], a["mem_used_bytes"], a["mem_total_bytes"]) == (
        87,
        41,
        70 * 2**30,
        80 * 2**30,
    )
    assert (a["power_mw"], a["power_limit_mw"], a["sm_clock_mhz"], a["temperature_c"]) == (
        612_345,
        700_000,
        1980,
        64,
    )
    assert (a["sm_activity_pct"], a["sm_occupancy_pct"], a["dram_bw_pct"], a["tensor_active_pct"]) == (
        72,
        33,
        55,
        40,
    )
    assert a["energy_mj"] == 123_456_789
    assert (a["proc_pids"], a["proc_mem_bytes"], a["proc_sm_pct"]) == (
        [77, 4242],
        [2**20, 69 * 2**30],
        [0, 85],
    )
    # Fields a GPU did not report stay null.
    assert (b["util_gpu_pct"], b["mem_used_bytes"], b["power_mw"], b["sm_activity_pct"]) == (0, 0, None, None)
    minute = store.rows(
        Query(
            "t.gm",
            "SELECT gpu_uuid, max(util_gpu_max) AS u, sum(samples) AS n, "
            "max(procs_max) AS p FROM gpu_minute GROUP BY gpu_uuid ORDER BY gpu_uuid",
        )
    )
    assert minute == [
        {"gpu_uuid": "GPU-a", "u": 87, "n": 1, "p": 2},
        {"gpu_uuid": "GPU-b", "u": 0, "n": 1, "p": 0},
    ]


def engine_request(t: int) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(
        attributes(resource(deployment="chat", instance="pod-1") | {"inferwatch.instance": "pod-1"})
    )
    metrics = rm.scope_metrics.add().metrics
    running = metrics.add(name="vllm:num_requests_running")
    running.gauge.data_points.add(time_unix_nano=t, as_double=7.0).attributes.extend(
        attributes({"model_name": "llama", "engine": "0"})
    )
    usage = metrics.add(name="vllm:gpu_cache_usage_perc")  # the old name of kv_cache_usage_perc
    usage.gauge.data_points.add(time_unix_nano=t, as_double=0.93)
    preempt = metrics.add(name="vllm:num_preemptions_total")
    preempt.sum.is_monotonic = True
    preempt.sum.data_points.add(time_unix_nano=t, as_int=12)
    info = metrics.add(name="vllm:cache_config_info")
    info.gauge.data_points.add(time_unix_nano=t, as_double=1.0).attributes.extend(
        attributes({"block_size": "16", "num_gpu_blocks": "8192"})
    )
    hist = metrics.add(name="vllm:time_to_first_token_seconds")
    point = hist.histogram.data_points.add(time_unix_nano=t, count=10, sum=2.5)
    point.explicit_bounds.extend([0.1, 0.5, 1.0])
    point.bucket_counts.extend([2, 5, 3, 0])
    unknown = metrics.add(name="python_gc_objects_collected")
    unknown.gauge.data_points.add(time_unix_nano=t, as_double=3.0)
    return request


def test_engine_metrics_are_stored_under_canonical_names(client: TestClient, store: Store) -> None:
    t = (time.time_ns() // NS - 60) * NS
    assert post(client, "/v1/metrics", engine_request(t)).status_code == 200
    rows = store.rows(
        Query(
            "t.eng",
            "SELECT metric, le, value, engine, instance, labels FROM engine_metrics ORDER BY metric, le",
        )
    )
    got = {(r["metric"], r["le"]): r["value"] for r in rows}
    assert got == {
        ("requests_running", 0.0): 7.0,
        ("kv_cache_usage", 0.0): 0.93,
        ("preemptions", 0.0): 12.0,
        ("kv_block_size", 0.0): 16.0,
        ("kv_cache_blocks", 0.0): 8192.0,
        # OTLP buckets are per-bucket counts; stored cumulatively, as Prometheus `le` buckets are.
        ("ttft_seconds_bucket", 0.1): 2.0,
        ("ttft_seconds_bucket", 0.5): 7.0,
        ("ttft_seconds_bucket", 1.0): 10.0,
        ("ttft_seconds_bucket", float("inf")): 10.0,
        ("ttft_seconds_sum", 0.0): 2.5,
        ("ttft_seconds_count", 0.0): 10.0,
    }
    assert {r["engine"] for r in rows} == {"vllm"}
    assert {r["instance"] for r in rows} == {"pod-1"}
    running = next(r for r in rows if r["metric"] == "requests_running")
    assert dict(running["labels"]) == {"model_name": "llama", "engine": "0"}
    assert (
        'inferwatch_ingest_items_total{outcome="ignored",signal="metrics"} 1.0' in client.get("/metrics").text
    )


def test_tgi_phases_come_from_children_in_the_same_batch(client: TestClient, store: Store) -> None:
    t0 = time.time_ns() - 30 * NS
    root = span(
        "generate_stream",
        t0,
        t0 + 2 * NS,
        {"total_time": "2s", "queue_time": "250ms", "inference_time": "1.75s", "time_per_token": "17.5ms"},
    )
    kids = [
        span("queued", t0, t0 + NS // 4, parent=root.span_id, trace_id=root.trace_id),
        span("prefill", t0 + NS // 4, t0 + NS // 2, parent=root.span_id, trace_id=root.trace_id),
        span("decode", t0 + NS // 2, t0 + 2 * NS, parent=root.span_id, trace_id=root.trace_id),
    ]
    assert post(client, "/v1/traces", traces_request([(resource(), [*kids, root])])).status_code == 200
    (row,) = store.rows(
        Query("t.tgi", "SELECT framework, queue_s, prefill_s, decode_s, ttft_s, e2e_s FROM requests")
    )
    assert row["framework"] == "tgi"
    assert (row["queue_s"], row["prefill_s"], row["decode_s"], row["e2e_s"]) == pytest.approx(
        (0.25, 0.25, 1.5, 2.0)
    )
    assert row["ttft_s"] == pytest.approx(0.25 + 0.25)


def test_the_same_batch_posted_twice_is_stored_once(client: TestClient, store: Store) -> None:
    t = (time.time_ns() // NS - 3600) * NS
    spans = [
        vllm_span(
            t + i * NS,
            queue=0.1,
            ttft=0.2,
            prefill=0.1,
            decode=2.0,
            e2e=2.2,
            prompt=100,
            output=50,
            request_id=f"r{i}",
        )
        for i in range(20)
    ]
    traces = traces_request([(resource(gpus=["GPU-x"]), spans)])
    samples = gpu_metrics_request(
        resource(), [{"time_ns": t + i * NS, "uuid": "GPU-x", "util_gpu_pct": 50} for i in range(30)]
    )
    engine = engine_request(t)
    for _ in range(2):
        assert post(client, "/v1/traces", traces).status_code == 200
        assert post(client, "/v1/metrics", samples).status_code == 200
        assert post(client, "/v1/metrics", engine).status_code == 200
    # The same spans re-encoded as gzip are still the same batch.
    import gzip

    reply = client.post(
        "/v1/traces",
        content=gzip.compress(traces.SerializeToString()),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert reply.status_code == 200
    assert store.scalar(Query("t.c1", "SELECT count() FROM requests")) == 20
    assert store.scalar(Query("t.c2", "SELECT count() FROM gpu_samples")) == 30
    assert store.scalar(Query("t.c3", "SELECT count() FROM engine_metrics")) == 11
    assert store.scalar(Query("t.c4", "SELECT sum(requests) FROM deployment_minute")) == 20
    assert store.scalar(Query("t.c5", "SELECT sum(samples) FROM gpu_minute")) == 30
    # 20 requests of 2.2 s each, all on GPU-x: 44 busy seconds in the in-flight rollup.
    assert store.scalar(Query("t.c6", "SELECT sum(busy_s) FROM inflight_minute")) == pytest.approx(44.0)


def test_requests_api_paginates_newest_first_without_gaps(client: TestClient) -> None:
    t = (time.time_ns() // NS - 7200) * NS
    spans = [
        vllm_span(
            t + i * NS,
            queue=0.0,
            ttft=0.1,
            prefill=0.1,
            decode=0.5,
            e2e=0.6,
            prompt=5,
            output=5,
            request_id=f"r{i:03d}",
        )
        for i in range(25)
    ]
    assert post(client, "/v1/traces", traces_request([(resource(deployment="a"), spans)])).status_code == 200
    other = [
        vllm_span(t, queue=0, ttft=0.1, prefill=0.1, decode=0.5, e2e=0.6, prompt=5, output=5, request_id="x")
    ]
    assert post(client, "/v1/traces", traces_request([(resource(deployment="b"), other)])).status_code == 200
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"deployment": "a", "limit": 10, "since": "2000-01-01T00:00:00Z"}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/api/v1/requests", params=params).json()
        seen += [item["request_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert seen == [f"r{i:03d}" for i in range(24, -1, -1)]


def test_requests_api_rejects_bad_parameters_precisely(client: TestClient) -> None:
    assert client.get("/api/v1/requests", params={"limit": 5000}).status_code == 422
    bad = client.get("/api/v1/requests", params={"cursor": "!!!"})
    assert bad.status_code == 400
    assert bad.json() == {"error": {"code": "bad_request", "message": "cursor is not one this API returned"}}
    reversed_window = client.get(
        "/api/v1/requests", params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    )
    assert reversed_window.status_code == 400
