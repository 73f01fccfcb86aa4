"""The span receiver: what the engine sends is decoded, stamped, written to the spool on disk
and only then answered 200; what cannot be read is refused with the reason; what the spool
cannot write is refused with 503 and Retry-After (so the engine keeps it), never acknowledged
and dropped."""

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
from collector.relay import OtlpReceiver
from collector.selfmetrics import CollectorMetrics
from collector.spool import DiskSpool, decode_records
from tests.collector.conftest import running, test_config
from tests.conftest import free_port

PROTOBUF = "application/x-protobuf"
UUIDS = ["GPU-aaaa", "GPU-bbbb"]


def receiver(tmp_path: Path, spool_bytes: int = 1 << 20) -> tuple[OtlpReceiver, Path, CollectorMetrics]:
    """A receiver writing to a real DiskSpool in ``tmp_path / "spool"`` (returned)."""
    identity = Identity(test_config("http://127.0.0.1:9", tmp_path))
    identity.set_gpu_uuids(UUIDS)
    metrics = CollectorMetrics()
    spool = DiskSpool(tmp_path / "spool", spool_bytes, metrics)
    return OtlpReceiver(identity, spool, metrics), tmp_path / "spool", metrics


def on_disk(spool_dir: Path) -> list[bytes]:
    """The requests written to the spool's segment files, in order: what a killed collector
    would find on its next start."""
    out = []
    for path in sorted(spool_dir.glob("*.seg")):
        if path.is_symlink():  # the stand-in for a full disk below
            continue
        bodies, _, good = decode_records(path.read_bytes())
        assert good == path.stat().st_size  # no torn or partial record
        out += bodies
    return out


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
    relay, spool_dir, metrics = receiver(tmp_path)
    body = spans_request(3, {"service.name": "vllm", "inferwatch.deployment": "set-by-the-engine"})
    reply = relay.handle("/v1/traces", PROTOBUF, "", body)
    assert (reply.status, reply.content_type) == (200, PROTOBUF)
    assert not ExportTraceServiceResponse.FromString(reply.body).HasField("partial_success")
    (stamped,) = on_disk(spool_dir)  # written before the answer
    assert resource_of(stamped) == {
        "service.name": "vllm",
        "inferwatch.deployment": "set-by-the-engine",
        "host.name": "node-a",
        "inferwatch.cluster": "test-cluster",
        "inferwatch.instance": "node-a-0",
        "inferwatch.model": "test/model",
        "inferwatch.collector.version": resource_of(stamped)["inferwatch.collector.version"],
        "inferwatch.gpu.uuids": UUIDS,
    }
    assert len(ExportTraceServiceRequest.FromString(stamped).resource_spans[0].scope_spans[0].spans) == 3
    assert (
        metrics.value("inferwatch_collector_received_items_total", {"kind": "traces", "source": "relay"}) == 3
    )


def test_gzip_and_json_bodies_are_accepted(tmp_path: Path) -> None:
    relay, spool_dir, _ = receiver(tmp_path)
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
    first, second = on_disk(spool_dir)
    assert resource_of(first)["service.name"] == "sglang"
    span = ExportTraceServiceRequest.FromString(second).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"  # hex in JSON, bytes on the wire
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    assert span.end_time_unix_nano == 1_700_000_001_000_000_000
    assert resource_of(second)["service.name"] == "tgi"


def test_what_cannot_be_read_is_refused_with_the_reason(tmp_path: Path) -> None:
    relay, spool_dir, metrics = receiver(tmp_path)
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
    assert on_disk(spool_dir) == []
    assert (
        metrics.value("inferwatch_collector_relay_requests_total", {"path": "/v1/traces", "code": "400"}) == 3
    )


def test_a_body_that_inflates_past_the_limit_is_refused(tmp_path: Path) -> None:
    identity = Identity(test_config("http://127.0.0.1:9", tmp_path))
    metrics = CollectorMetrics()
    relay = OtlpReceiver(
        identity, DiskSpool(tmp_path / "spool", 1 << 20, metrics), metrics, max_body_bytes=10_000
    )
    bomb = gzip.compress(b"\x00" * 1_000_000)  # 1 KB on the wire, 1 MB inflated
    assert len(bomb) < 10_000
    assert relay.handle("/v1/traces", PROTOBUF, "gzip", bomb).status == 413


def test_when_the_spool_cannot_write_the_engine_gets_503_and_retry_after_never_a_false_200(
    tmp_path: Path,
) -> None:
    relay, spool_dir, metrics = receiver(tmp_path)
    # The first segment the spool opens is 0000000000000001.traces.seg: make it the kernel's
    # /dev/full, where every write fails with ENOSPC, as on a full disk.
    (spool_dir / "0000000000000001.traces.seg").symlink_to("/dev/full")
    body = spans_request(5, {"service.name": "vllm"})
    reply = relay.handle("/v1/traces", PROTOBUF, "", body)
    assert (reply.status, reply.headers) == (503, {"Retry-After": "5"})
    assert b"write_error" in reply.body and b"disk is full" in reply.body
    refused = {"kind": "traces", "reason": "write_error"}
    assert metrics.value("inferwatch_collector_relay_refused_items_total", refused) == 5
    assert (
        metrics.value("inferwatch_collector_received_items_total", {"kind": "traces", "source": "relay"}) == 0
    )
    # The next request goes to a new segment (never appended after a failed write) and is kept.
    assert relay.handle("/v1/traces", PROTOBUF, "", body).status == 200
    assert len(on_disk(spool_dir)) == 1
    assert (
        metrics.value("inferwatch_collector_received_items_total", {"kind": "traces", "source": "relay"}) == 5
    )
    codes = {
        code: metrics.value("inferwatch_collector_relay_requests_total", {"path": "/v1/traces", "code": code})
        for code in ("200", "503")
    }
    assert codes == {"200": 1, "503": 1}


def test_a_request_larger_than_the_whole_spool_is_refused_with_413(tmp_path: Path) -> None:
    relay, spool_dir, metrics = receiver(tmp_path, spool_bytes=1000)
    reply = relay.handle("/v1/traces", PROTOBUF, "", spans_request(40, {"service.name": "vllm"}))
    assert reply.status == 413 and on_disk(spool_dir) == []
    refused = {"kind": "traces", "reason": "too_large"}
    assert metrics.value("inferwatch_collector_relay_refused_items_total", refused) == 40


def test_json_nested_too_deeply_is_answered_400_over_the_socket_not_a_dropped_connection(
    tmp_path: Path,
) -> None:
    deep = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    config = test_config(f"http://127.0.0.1:{free_port()}", tmp_path / "spool")
    with running(config) as collector:
        url = f"http://127.0.0.1:{collector.relay_port}/v1/traces"
        reply = httpx.post(url, content=deep, headers={"Content-Type": "application/json"}, timeout=10)
        assert reply.status_code == 400
        assert reply.json() == {
            "code": 400,
            "message": "cannot decode the OTLP request: JSON nested too deeply",
        }
        # Also nested objects, which recurse in protobuf's JSON parser rather than in json.loads.
        nested = b'{"resourceSpans": [{"resource": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}]}"
        reply = httpx.post(url, content=nested, headers={"Content-Type": "application/json"}, timeout=10)
        assert reply.status_code == 400, reply.text
        codes = collector.metrics.value(
            "inferwatch_collector_relay_requests_total", {"path": "/v1/traces", "code": "400"}
        )
        assert codes == 2


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
    relay, spool_dir, metrics = receiver(tmp_path)
    assert relay.handle("/v1/metrics", PROTOBUF, "", request.SerializeToString()).status == 200
    (stamped,) = on_disk(spool_dir)
    assert list(spool_dir.glob("*.metrics.seg"))
    assert (
        metrics.value("inferwatch_collector_received_items_total", {"kind": "metrics", "source": "relay"})
        == 1
    )
    attrs = {
        kv.key
        for kv in ExportMetricsServiceRequest.FromString(stamped).resource_metrics[0].resource.attributes
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
