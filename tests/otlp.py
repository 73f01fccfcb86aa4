"""Builders for OTLP requests in tests: spans shaped like each engine's, GPU metrics as the
collector sends them, and helpers to post them through the real ingest endpoints."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from collector import wire
from collector.wire import varint as wire_varint

NS = 1_000_000_000


def set_any(target: AnyValue, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, list | tuple):
        for item in value:
            set_any(target.array_value.values.add(), item)
    else:
        target.string_value = str(value)


def attributes(values: Mapping[str, Any]) -> list[KeyValue]:
    out = []
    for key, value in values.items():
        kv = KeyValue(key=key)
        set_any(kv.value, value)
        out.append(kv)
    return out


def resource(
    *,
    host: str = "node-1",
    deployment: str = "chat",
    cluster: str = "prod",
    gpus: Iterable[str] = (),
    model: str = "",
    **extra: Any,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "host.name": host,
        "inferwatch.deployment": deployment,
        "inferwatch.cluster": cluster,
    }
    if gpus:
        attrs["inferwatch.gpu.uuids"] = list(gpus)
    if model:
        attrs["inferwatch.model"] = model
    attrs.update(extra)
    return attrs


def span(
    name: str,
    start_ns: int,
    end_ns: int,
    attrs: Mapping[str, Any] | None = None,
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent: bytes = b"",
    status_code: int = 0,
    status_message: str = "",
) -> trace_pb2.Span:
    s = trace_pb2.Span(
        trace_id=trace_id if trace_id is not None else os.urandom(16),
        span_id=span_id if span_id is not None else os.urandom(8),
        parent_span_id=parent,
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns,
    )
    s.attributes.extend(attributes(attrs or {}))
    s.status.code = status_code  # type: ignore[assignment]
    s.status.message = status_message
    return s


def traces_request(
    groups: Iterable[tuple[Mapping[str, Any], Iterable[trace_pb2.Span]]],
) -> ExportTraceServiceRequest:
    """One ResourceSpans per (resource attributes, spans) group."""
    request = ExportTraceServiceRequest()
    for res, spans in groups:
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(attributes(res))
        rs.scope_spans.add().spans.extend(spans)
    return request


def vllm_span(
    start_ns: int,
    *,
    queue: float,
    ttft: float,
    prefill: float,
    decode: float,
    e2e: float,
    prompt: int,
    output: int,
    request_id: str = "cmpl-1",
    finish: str = "stop",
    model: str = "llama",
    max_tokens: int | None = None,
    **kw: Any,
) -> trace_pb2.Span:
    attrs: dict[str, Any] = {
        "gen_ai.latency.time_in_queue": queue,
        "gen_ai.latency.time_to_first_token": ttft,
        "gen_ai.latency.time_in_model_prefill": prefill,
        "gen_ai.latency.time_in_model_decode": decode,
        "gen_ai.latency.time_in_model_inference": prefill + decode,
        "gen_ai.latency.e2e": e2e,
        "gen_ai.usage.prompt_tokens": prompt,
        "gen_ai.usage.completion_tokens": output,
        "gen_ai.request.id": request_id,
        "gen_ai.response.model": model,
        "gen_ai.response.finish_reasons": f'["{finish}"]',
    }
    if max_tokens:
        attrs["gen_ai.request.max_tokens"] = max_tokens
    return span("llm_request", start_ns, start_ns + int(e2e * NS), attrs, **kw)


def gauge(
    metrics: Any, name: str, unit: str, points: Iterable[tuple[int, float | int, Mapping[str, Any]]]
) -> None:
    m = metrics.add(name=name, unit=unit)
    for time_ns, value, attrs in points:
        p = m.gauge.data_points.add(time_unix_nano=time_ns)
        if isinstance(value, int):
            p.as_int = value
        else:
            p.as_double = value
        p.attributes.extend(attributes(attrs))


GPU_FIELD_METRICS = {
    "util_gpu_pct": ("gpu.utilization", "%"),
    "util_mem_pct": ("gpu.memory.utilization", "%"),
    "mem_used_bytes": ("gpu.memory.used", "By"),
    "mem_total_bytes": ("gpu.memory.total", "By"),
    "power_mw": ("gpu.power.draw", "mW"),
    "power_limit_mw": ("gpu.power.limit", "mW"),
    "sm_clock_mhz": ("gpu.clock.sm", "MHz"),
    "temperature_c": ("gpu.temperature", "Cel"),
    "sm_activity_pct": ("gpu.gpm.sm_activity", "%"),
    "sm_occupancy_pct": ("gpu.gpm.sm_occupancy", "%"),
    "dram_bw_pct": ("gpu.gpm.dram_bandwidth", "%"),
    "tensor_active_pct": ("gpu.gpm.tensor_activity", "%"),
}


def gpu_metrics_request(
    res: Mapping[str, Any], samples: Iterable[Mapping[str, Any]]
) -> ExportMetricsServiceRequest:
    """GPU samples as the collector sends them. Each sample: `time_ns`, `uuid`, `index`,
    `name`, any of the stored column names (`util_gpu_pct`, `mem_used_bytes`, …), and
    optionally `energy_mj` and `procs` = [(pid, mem_bytes, sm_pct)]."""
    samples = list(samples)
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(attributes(res))
    metrics = rm.scope_metrics.add().metrics
    by_metric: dict[str, list[tuple[int, Any, dict[str, Any]]]] = {}
    units: dict[str, str] = {}
    for s in samples:
        ident = {
            "gpu.uuid": s["uuid"],
            "gpu.index": s.get("index", 0),
            "gpu.name": s.get("name", "NVIDIA H100 80GB HBM3"),
        }
        for column, (metric, unit) in GPU_FIELD_METRICS.items():
            if s.get(column) is not None:
                by_metric.setdefault(metric, []).append((s["time_ns"], s[column], ident))
                units[metric] = unit
        for pid, mem, sm in s.get("procs", ()):
            pattrs = {**ident, "process.pid": pid}
            by_metric.setdefault("gpu.process.memory.used", []).append((s["time_ns"], mem, pattrs))
            by_metric.setdefault("gpu.process.sm_utilization", []).append((s["time_ns"], sm, pattrs))
            units["gpu.process.memory.used"] = "By"
            units["gpu.process.sm_utilization"] = "%"
    for metric, points in by_metric.items():
        gauge(metrics, metric, units[metric], points)
    energy = [
        (s["time_ns"], s["energy_mj"], {"gpu.uuid": s["uuid"], "gpu.index": s.get("index", 0)})
        for s in samples
        if s.get("energy_mj") is not None
    ]
    if energy:
        m = metrics.add(name="gpu.energy.consumed", unit="mJ")
        m.sum.is_monotonic = True
        m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        for time_ns, value, attrs in energy:
            p = m.sum.data_points.add(time_unix_nano=time_ns, as_int=value)
            p.attributes.extend(attributes(attrs))
    return request


def post(client: Any, path: str, message: Any, **headers: str) -> Any:
    """POST a protobuf OTLP message through a TestClient or httpx client."""
    return client.post(
        path,
        content=message.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", **headers},
    )


def wire_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field: tag, length, bytes (the collector's encoder,
    which its own tests check against the official classes)."""
    return wire.field(wire_varint(number << 3 | 2), payload)
