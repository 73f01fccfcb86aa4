"""The span receiver: what the engine sends is decoded, stamped, queued and answered at once;
what cannot be read is refused with the reason; a full queue is answered with a partial
success, never with a wait."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from collector.identity import Identity
from collector.otlp import key_values, resource
from collector.queue import PayloadQueue
from collector.relay import OtlpReceiver
from collector.selfmetrics import CollectorMetrics
from tests.collector.conftest import running, test_config
from tests.conftest import free_port

PROTOBUF = "application/x-protobuf"
UUIDS = ["GPU-aaaa", "GPU-bbbb"]


def receiver(
    tmp_path: Path, queue_bytes: int = 1 << 20
) -> tuple[OtlpReceiver, PayloadQueue, CollectorMetrics]:
    identity = Identity(test_config("http://127.0.0.1:9", tmp_path))
    identity.set_gpu_uuids(UUIDS)
    queue, metrics = PayloadQueue(queue_bytes), CollectorMetrics()
    return OtlpReceiver(identity, queue, metrics), queue, metrics


def spans_request(count: int, resource_attrs: dict[str, object]) -> bytes:
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    spans = [
        Span(
            trace_id=bytes(16 * [i + 1]),
            span_id=bytes(8 * [i + 1]),
            name="llm_request",
            start_time_unix_nano=1,
            end_time_unix_nano=2,
        )
        for i in range(count)
    ]
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=resource(resource_attrs), scope_spans=[ScopeSpans(spans=spans)])
        ]
    ).SerializeToString()


def resource_of(body: bytes) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in ExportTraceServiceRequest.FromString(body).resource_spans[0].resource.attributes:
        which = kv.value.WhichOneof("value")
        out[kv.key] = (
            [v.string_value for v in kv.value.array_value.values]
            if which == "array_value"
            else getattr(kv.value, which)
        )
    return out


def test_spans_are_stamped_with_the_collectors_identity_and_the_engines_own_values_win(
    tmp_path: Path,
) -> None:
    relay, queue, metrics = receiver(tmp_path)
    body = spans_request(3, {"service.name": "vllm", "inferwatch.deployment": "set-by-the-engine"})
    reply = relay.handle("/v1/traces", PROTOBUF, "", body)
    assert (reply.status, reply.content_type) == (200, PROTOBUF)
    assert not ExportTraceServiceResponse.FromString(reply.body).HasField("partial_success")
    payload = queue.get(timeout=0)
    assert payload is not None and (payload.kind, payload.items) == ("traces", 3)
    assert resource_of(payload.body) == {
        "service.name": "vllm",
        "inferwatch.deployment": "set-by-the-engine",
        "host.name": "node-a",
        "inferwatch.cluster": "test-cluster",
        "inferwatch.instance": "node-a-0",
        "inferwatch.model": "test/model",
        "inferwatch.collector.version": resource_of(payload.body)["inferwatch.collector.version"],
        "inferwatch.gpu.uuids": UUIDS,
    }
    assert len(ExportTraceServiceRequest.FromString(payload.body).resource_spans[0].scope_spans[0].spans) == 3
    assert (
        metrics.value("inferwatch_collector_received_items_total", {"kind": "traces", "source": "relay"}) == 3
    )


def test_gzip_and_json_bodies_are_accepted(tmp_path: Path) -> None:
    relay, queue, _ = receiver(tmp_path)
    body = gzip.compress(spans_request(2, {"service.name": "sglang"}))
    assert relay.handle("/v1/traces", PROTOBUF, "gzip", body).status == 200
    as_json = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "tgi"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "generate",
                                "kind": 2,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                            }
                        ]
                    }
                ],
            }
        ]
    }
    reply = relay.handle("/v1/traces", "application/json", "", json.dumps(as_json).encode())
    assert (reply.status, reply.content_type) == (200, "application/json")
    queue.get(timeout=0)
    payload = queue.get(timeout=0)
    assert payload is not None
    span = ExportTraceServiceRequest.FromString(payload.body).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"  # hex in JSON, bytes on the wire
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    assert span.end_time_unix_nano == 1_700_000_001_000_000_000
    assert resource_of(payload.body)["service.name"] == "tgi"


def test_what_cannot_be_read_is_refused_with_the_reason(tmp_path: Path) -> None:
    relay, queue, metrics = receiver(tmp_path)
    cases = [
        (("/v1/traces", "text/plain", "", b"x"), 415),
        (("/v1/traces", PROTOBUF, "br", b"x"), 415),
        (("/v1/traces", PROTOBUF, "", b"\xff\xff\xff"), 400),
        (("/v1/traces", PROTOBUF, "gzip", b"not gzip"), 400),
        (("/v1/traces", "application/json", "", b'{"resourceSpans": 7}'), 400),
        (("/v1/logs", PROTOBUF, "", b""), 404),
    ]
    for args, status in cases:
        assert relay.handle(*args).status == status, args
    assert queue.get(timeout=0) is None
    assert (
        metrics.value("inferwatch_collector_relay_requests_total", {"path": "/v1/traces", "code": "400"}) == 3
    )


def test_a_body_that_inflates_past_the_limit_is_refused(tmp_path: Path) -> None:
    identity = Identity(test_config("http://127.0.0.1:9", tmp_path))
    relay = OtlpReceiver(identity, PayloadQueue(1 << 20), CollectorMetrics(), max_body_bytes=10_000)
    bomb = gzip.compress(b"\x00" * 1_000_000)  # 1 KB on the wire, 1 MB inflated
    assert len(bomb) < 10_000
    assert relay.handle("/v1/traces", PROTOBUF, "gzip", bomb).status == 413


def test_a_full_queue_is_answered_at_once_with_a_partial_success_and_counted(tmp_path: Path) -> None:
    body = spans_request(5, {"service.name": "vllm"})
    probe, probe_queue, _ = receiver(tmp_path)
    probe.handle("/v1/traces", PROTOBUF, "", body)
    stamped = probe_queue.get(timeout=0)
    assert stamped is not None
    relay, queue, metrics = receiver(tmp_path, queue_bytes=len(stamped.body))  # room for one request
    assert relay.handle("/v1/traces", PROTOBUF, "", body).status == 200
    reply = relay.handle("/v1/traces", PROTOBUF, "", body)
    assert reply.status == 200
    partial = ExportTraceServiceResponse.FromString(reply.body).partial_success
    assert partial.rejected_spans == 5 and "queue full" in partial.error_message
    assert (
        metrics.value("inferwatch_collector_queue_dropped_items_total", {"kind": "traces", "source": "relay"})
        == 5
    )


def test_engine_metrics_pushed_over_otlp_are_stamped_too(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, ResourceMetrics, ScopeMetrics

    metric = Metric(name="sglang:num_running_reqs")
    metric.gauge.data_points.add(time_unix_nano=5, as_double=2.0, attributes=key_values({"tp_rank": "0"}))
    request = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=resource({"service.name": "sglang"}), scope_metrics=[ScopeMetrics(metrics=[metric])]
            )
        ]
    )
    relay, queue, _ = receiver(tmp_path)
    assert relay.handle("/v1/metrics", PROTOBUF, "", request.SerializeToString()).status == 200
    payload = queue.get(timeout=0)
    assert payload is not None and (payload.kind, payload.items) == ("metrics", 1)
    attrs = {
        kv.key
        for kv in ExportMetricsServiceRequest.FromString(payload.body).resource_metrics[0].resource.attributes
    }
    assert {"service.name", "host.name", "inferwatch.cluster", "inferwatch.gpu.uuids"} <= attrs


def test_the_relay_serves_the_otel_sdks_json_exporter_over_http(tmp_path: Path) -> None:
    config = replace(test_config(f"http://127.0.0.1:{free_port()}", tmp_path / "spool"))
    with running(config) as collector:
        exporter = JsonSpanExporter(endpoint=f"http://127.0.0.1:{collector.relay_port}/v1/traces")
        provider = TracerProvider(resource=Resource.create({"service.name": "vllm"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider.get_tracer("t").start_span("llm_request").end()
        provider.shutdown()
        assert (
            collector.metrics.value(
                "inferwatch_collector_received_items_total", {"kind": "traces", "source": "relay"}
            )
            == 1
        )
        own = httpx.get(f"http://127.0.0.1:{collector.metrics_port}/metrics").text
        assert 'inferwatch_collector_relay_requests_total{code="200",path="/v1/traces"} 1.0' in own
        assert httpx.get(f"http://127.0.0.1:{collector.relay_port}/v1/traces").status_code == 405
