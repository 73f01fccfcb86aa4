"""OTLP building blocks: resources, attributes, and GPU samples as OTLP metrics.

The metric names, units and attributes are the wire contract in docs/telemetry.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector import collector_version, wire
from collector.samples import GpuSample

SCOPE_NAME = "inferwatch.collector"

# (OTLP metric name, unit, GpuSample attribute, is a double, is a cumulative sum)
GPU_FIELDS: tuple[tuple[str, str, str, bool, bool], ...] = (
    ("gpu.utilization", "%", "util_gpu_pct", False, False),
    ("gpu.memory.utilization", "%", "util_mem_pct", False, False),
    ("gpu.memory.used", "By", "mem_used_bytes", False, False),
    ("gpu.memory.total", "By", "mem_total_bytes", False, False),
    ("gpu.power.draw", "mW", "power_mw", False, False),
    ("gpu.power.limit", "mW", "power_limit_mw", False, False),
    ("gpu.energy.consumed", "mJ", "energy_mj", False, True),
    ("gpu.clock.sm", "MHz", "sm_clock_mhz", False, False),
    ("gpu.temperature", "Cel", "temperature_c", False, False),
    ("gpu.gpm.sm_activity", "%", "sm_activity_pct", True, False),
    ("gpu.gpm.sm_occupancy", "%", "sm_occupancy_pct", True, False),
    ("gpu.gpm.dram_bandwidth", "%", "dram_bw_pct", True, False),
    ("gpu.gpm.tensor_activity", "%", "tensor_active_pct", True, False),
)
PROCESS_MEMORY = "gpu.process.memory.used"
PROCESS_SM = "gpu.process.sm_utilization"


def any_value(value: Any) -> AnyValue:
    """A Python str / bool / int / float / list of those as an OTLP AnyValue."""
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    raise TypeError(f"cannot encode {type(value).__name__} as an OTLP attribute")


def key_values(attrs: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def resource(attrs: Mapping[str, Any]) -> Resource:
    return Resource(attributes=key_values(attrs))


def add_missing_attributes(target: Resource, attrs: Sequence[KeyValue]) -> int:
    """Append each of ``attrs`` whose key ``target`` lacks; the sender's own values win.

    Returns how many were added.
    """
    present = {kv.key for kv in target.attributes}
    missing = [kv for kv in attrs if kv.key not in present]
    target.attributes.extend(missing)
    return len(missing)


def scope() -> InstrumentationScope:
    return InstrumentationScope(name=SCOPE_NAME, version=collector_version())


def gpu_metrics_request(samples: Iterable[GpuSample], resource_attrs: Mapping[str, Any]) -> bytes:
    """One serialized ExportMetricsServiceRequest holding every field of every sample.

    A field that is ``None`` on a GPU is left out for that GPU (the contract: absent, not zero).
    Encoded by ``collector.wire`` (the hot path); the result parses as the OTLP message.
    """
    samples = list(samples)
    attrs = {s.uuid: wire.gpu_attributes(s.uuid, s.index, s.name) for s in samples}
    metrics: list[bytes] = []
    for name, unit, attr, is_double, is_sum in GPU_FIELDS:
        points = []
        for s in samples:
            value = getattr(s, attr)
            if value is None:
                continue
            if is_double:
                points.append(wire.double_point(attrs[s.uuid], s.time_ns, float(value)))
            else:
                points.append(wire.int_point(attrs[s.uuid], s.time_ns, int(value)))
        if points:
            metrics.append(wire.metric(name, unit, points, cumulative_sum=is_sum))
    mem_points, sm_points = [], []
    for s in samples:
        for proc in s.processes:
            proc_attrs = attrs[s.uuid] + wire.pid_attribute(proc.pid)
            if proc.mem_used_bytes is not None:
                mem_points.append(wire.int_point(proc_attrs, s.time_ns, proc.mem_used_bytes))
            if proc.sm_util_pct is not None:
                sm_points.append(wire.int_point(proc_attrs, s.time_ns, proc.sm_util_pct))
    if mem_points:
        metrics.append(wire.metric(PROCESS_MEMORY, "By", mem_points))
    if sm_points:
        metrics.append(wire.metric(PROCESS_SM, "%", sm_points))
    return wire.request(resource(resource_attrs).SerializeToString(), scope().SerializeToString(), metrics)


def metrics_request(resource_attrs: Mapping[str, Any], metrics: Sequence[Metric]) -> bytes:
    request = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=resource(resource_attrs),
                scope_metrics=[ScopeMetrics(scope=scope(), metrics=metrics)],
            )
        ]
    )
    return request.SerializeToString()
