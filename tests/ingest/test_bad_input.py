"""Bad input gets a precise 4xx or a partial_success rejection with a reason; the valid
spans of the same batch are stored; nothing causes a 500."""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from api.app import create_app
from api.settings import Settings
from api.store import Query, Store
from tests.otlp import NS, gpu_metrics_request, post, resource, span, traces_request, vllm_span

COUNT_REQUESTS = Query("test.count_requests", "SELECT count() FROM requests")
COUNT_SAMPLES = Query("test.count_samples", "SELECT count() FROM gpu_samples")


@pytest.fixture
def small_client(settings: Settings, store: Store) -> Iterator[TestClient]:
    limited = settings.model_copy(
        update={
            "max_body_bytes": 64 * 1024,
            "max_decompressed_bytes": 256 * 1024,
            "max_items_per_request": 1000,
        }
    )
    with TestClient(create_app(limited, store=store), client=("127.0.0.1", 50000)) as c:
        yield c


def status_of(reply) -> status_pb2.Status:  # type: ignore[no-untyped-def]
    status = status_pb2.Status()
    status.ParseFromString(reply.content)
    return status


def good_span(start_ns: int, request_id: str = "ok"):  # type: ignore[no-untyped-def]
    return vllm_span(
        start_ns,
        queue=0.1,
        ttft=0.3,
        prefill=0.2,
        decode=1.0,
        e2e=1.3,
        prompt=10,
        output=20,
        request_id=request_id,
    )


def test_malformed_protobuf_is_a_400_with_a_status_body(client: TestClient) -> None:
    reply = client.post(
        "/v1/traces", content=b"\x0a\xff\xff\xff\xff\x0f", headers={"Content-Type": "application/x-protobuf"}
    )
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/x-protobuf"
    assert "not a valid protobuf" in status_of(reply).message


def test_malformed_json_is_a_400_naming_the_problem(client: TestClient) -> None:
    reply = client.post(
        "/v1/traces", content=b'{"resourceSpans": [', headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400
    assert "not valid JSON" in reply.json()["message"]
    wrong_shape = client.post(
        "/v1/metrics", content=b'{"resourceMetrics": 7}', headers={"Content-Type": "application/json"}
    )
    assert wrong_shape.status_code == 400
    assert "ExportMetricsServiceRequest" in wrong_shape.json()["message"]


def test_wrong_content_type_is_415(client: TestClient) -> None:
    reply = client.post("/v1/traces", content=b"hello", headers={"Content-Type": "text/plain"})
    assert reply.status_code == 415
    assert "application/x-protobuf" in reply.json()["message"]
    missing = client.post("/v1/metrics", content=b"hello")
    assert missing.status_code == 415


def test_unknown_content_encoding_is_415(client: TestClient) -> None:
    reply = client.post(
        "/v1/traces",
        content=b"x",
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "br"},
    )
    assert reply.status_code == 415


def test_oversized_body_is_413_before_decompression(small_client: TestClient, store: Store) -> None:
    spans = [good_span(time.time_ns() - 100 * NS, f"r{i}") for i in range(1)]
    body = traces_request([(resource(), spans)]).SerializeToString() + b"\x00" * 0
    padded = body + b"\x12\x00" * (40 * 1024)  # empty repeated fields: still valid protobuf, but large
    reply = small_client.post(
        "/v1/traces", content=padded, headers={"Content-Type": "application/x-protobuf"}
    )
    assert reply.status_code == 413
    assert "limit is 65536" in status_of(reply).message
    assert store.scalar(COUNT_REQUESTS) == 0


def test_gzip_bomb_is_413_after_decompression(small_client: TestClient) -> None:
    bomb = gzip.compress(b"\x00" * (8 * 1024 * 1024))  # 8 MiB of zeros in ~8 KiB
    assert len(bomb) < 64 * 1024
    reply = small_client.post(
        "/v1/traces",
        content=bomb,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert reply.status_code == 413
    assert "inflates past the limit of 262144" in status_of(reply).message


def test_corrupt_gzip_is_400(client: TestClient) -> None:
    reply = client.post(
        "/v1/traces",
        content=b"\x1f\x8b\x08\x00garbage",
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert reply.status_code == 400


def test_too_many_spans_in_one_request_is_400(small_client: TestClient) -> None:
    now = time.time_ns() - 100 * NS
    spans = [span("other", now, now + NS) for _ in range(1001)]
    reply = post(small_client, "/v1/traces", traces_request([(resource(), spans)]))
    assert reply.status_code == 400
    assert "1001 spans; the limit is 1000" in status_of(reply).message


def test_gzip_body_is_accepted(client: TestClient, store: Store) -> None:
    body = traces_request([(resource(), [good_span(time.time_ns() - 100 * NS)])]).SerializeToString()
    reply = client.post(
        "/v1/traces",
        content=gzip.compress(body),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert reply.status_code == 200
    assert store.scalar(COUNT_REQUESTS) == 1


def test_bad_spans_are_rejected_with_reasons_and_the_rest_stored(client: TestClient, store: Store) -> None:
    t = time.time_ns() - 600 * NS
    spans = [
        good_span(t, "good-1"),
        vllm_span(t, queue=-0.5, ttft=0.3, prefill=0.2, decode=1.0, e2e=1.3, prompt=10, output=20),
        vllm_span(t, queue=0.1, ttft=math.nan, prefill=0.2, decode=1.0, e2e=1.3, prompt=10, output=20),
        vllm_span(
            t, queue=0.1, ttft=0.3, prefill=0.2, decode=1.0, e2e=1.3, prompt=10, output=20, span_id=b""
        ),
        vllm_span(
            t,
            queue=0.1,
            ttft=0.3,
            prefill=0.2,
            decode=1.0,
            e2e=1.3,
            prompt=10,
            output=20,
            trace_id=b"\x00" * 16,
        ),
        span("llm_request", t + 5 * NS, t, {"gen_ai.usage.prompt_tokens": 1}),  # ends before it starts
        span("llm_request", t, t + NS, {"gen_ai.usage.prompt_tokens": -3}),
        good_span(t + NS, "good-2"),
        span("GET /health", t, t + NS),  # not a request: ignored, not rejected
    ]
    reply = post(client, "/v1/traces", traces_request([(resource(), spans)]))
    assert reply.status_code == 200
    response = ExportTraceServiceResponse()
    response.ParseFromString(reply.content)
    assert response.partial_success.rejected_spans == 6
    message = response.partial_success.error_message
    for reason in (
        "queue time is negative",
        "time to first token is not a finite number",
        "missing or malformed span id",
        "missing or malformed trace id",
        "span ends before it starts",
        "prompt tokens is not a whole number",
    ):
        assert reason in message
    ids = {r["request_id"] for r in store.rows(Query("t.ids", "SELECT request_id FROM requests"))}
    assert ids == {"good-1", "good-2"}
    metrics = client.get("/metrics").text
    assert 'inferwatch_ingest_items_total{outcome="rejected",signal="traces"} 6.0' in metrics
    assert 'inferwatch_ingest_items_total{outcome="ignored",signal="traces"} 1.0' in metrics
    assert (
        'inferwatch_ingest_rejected_items_total{reason="queue time is negative",signal="traces"} 1.0'
        in metrics
    )


def test_json_request_with_bad_hex_id_rejects_only_that_span(client: TestClient, store: Store) -> None:
    t = time.time_ns() - 60 * NS

    def json_span(span_id: str) -> dict:
        return {
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": span_id,
            "name": "llm_request",
            "startTimeUnixNano": str(t),
            "endTimeUnixNano": str(t + NS),
            "attributes": [{"key": "gen_ai.usage.prompt_tokens", "value": {"intValue": "12"}}],
        }

    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": []},
                "scopeSpans": [{"spans": [json_span("eee19b7ec3c1b174"), json_span("not-hex!")]}],
            }
        ]
    }
    reply = client.post(
        "/v1/traces", content=json.dumps(document), headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 200
    assert reply.json()["partialSuccess"]["rejectedSpans"] == "1"
    rows = store.rows(Query("t.rows", "SELECT span_id, prompt_tokens FROM requests"))
    assert rows == [{"span_id": "eee19b7ec3c1b174", "prompt_tokens": 12}]


def test_bad_gpu_points_are_rejected_and_the_rest_stored(client: TestClient, store: Store) -> None:
    t = (time.time_ns() // NS - 120) * NS
    request = gpu_metrics_request(
        resource(),
        [
            {"time_ns": t, "uuid": "GPU-1", "util_gpu_pct": 40, "power_mw": 300_000},
            {"time_ns": t + NS, "uuid": "GPU-1", "util_gpu_pct": 140},  # out of range
            {"time_ns": t, "uuid": "", "util_gpu_pct": 10},  # no GPU id
            {"time_ns": t + 2 * NS, "uuid": "GPU-1", "sm_activity_pct": math.nan},
        ],
    )
    reply = post(client, "/v1/metrics", request)
    assert reply.status_code == 200
    response = ExportMetricsServiceResponse()
    response.ParseFromString(reply.content)
    assert response.partial_success.rejected_data_points == 3
    assert "has no gpu.uuid" in response.partial_success.error_message
    assert "outside 0–100" in response.partial_success.error_message
    assert store.scalar(COUNT_SAMPLES) == 1


def test_no_input_causes_a_500(client: TestClient) -> None:
    bodies = [
        b"",
        b"\x00",
        b"{}",
        b"[]",
        b"null",
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{}]}]}]}',
        b"\xff" * 64,
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}).encode(),
    ]
    for path in ("/v1/traces", "/v1/metrics"):
        for ctype in ("application/json", "application/x-protobuf"):
            for body in bodies:
                reply = client.post(path, content=body, headers={"Content-Type": ctype})
                assert reply.status_code < 500, (path, ctype, body, reply.text)


def test_an_infinite_token_count_is_a_reasoned_rejection(client: TestClient, store: Store) -> None:
    t = time.time_ns() - 60 * NS
    spans = [span("llm_request", t, t + NS, {"gen_ai.usage.prompt_tokens": math.inf}), good_span(t, "fine")]
    reply = post(client, "/v1/traces", traces_request([(resource(), spans)]))
    assert reply.status_code == 200
    response = ExportTraceServiceResponse()
    response.ParseFromString(reply.content)
    assert response.partial_success.rejected_spans == 1
    assert "prompt tokens is not a whole number of tokens" in response.partial_success.error_message
    assert store.scalar(COUNT_REQUESTS) == 1


def test_metric_points_older_than_the_retention_are_rejected_not_dropped_silently(
    client: TestClient, store: Store, settings: Settings
) -> None:
    # The raw tables' TTL would drop such points on insert after they were acknowledged.
    now = (time.time_ns() // NS) * NS
    old = now - (settings.raw_ttl_days * 86_400 + 3_600) * NS  # an hour past the retention
    request = gpu_metrics_request(
        resource(),
        [
            {"time_ns": now - 60 * NS, "uuid": "GPU-1", "util_gpu_pct": 40},
            {"time_ns": old, "uuid": "GPU-1", "util_gpu_pct": 50},
        ],
    )
    rm = request.resource_metrics[0].scope_metrics[0].metrics
    engine = rm.add(name="vllm:num_requests_running", unit="1")
    engine.gauge.data_points.add(time_unix_nano=old, as_double=3.0)
    reply = post(client, "/v1/metrics", request)
    assert reply.status_code == 200
    response = ExportMetricsServiceResponse()
    response.ParseFromString(reply.content)
    assert response.partial_success.rejected_data_points == 2  # the old GPU point and the old engine point
    assert "2 × time is older than the retention period" in response.partial_success.error_message
    assert store.scalar(COUNT_SAMPLES) == 1
