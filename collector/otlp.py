"""OTLP building blocks: resources, attributes, and GPU samples as OTLP metrics.

The metric names, units and attributes are the wire contract in docs/telemetry.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector import collector_version
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
    """
    samples = list(samples)
    metrics: list[Metric] = []
    point_attrs = {s.uuid: _gpu_attrs(s) for s in samples}
    for name, unit, attr, is_double, is_sum in GPU_FIELDS:
        points = []
        for s in samples:
            value = getattr(s, attr)
            if value is None:
                continue
            point = NumberDataPoint(time_unix_nano=s.time_ns, attributes=point_attrs[s.uuid])
            if is_double:
                point.as_double = float(value)
            else:
                point.as_int = int(value)
            points.append(point)
        if points:
            metrics.append(_number_metric(name, unit, points, is_sum))
    mem_points, sm_points = [], []
    for s in samples:
        for proc in s.processes:
            attrs = [*point_attrs[s.uuid], KeyValue(key="process.pid", value=AnyValue(int_value=proc.pid))]
            if proc.mem_used_bytes is not None:
                mem_points.append(NumberDataPoint(time_unix_nano=s.time_ns, attributes=attrs,
                                                  as_int=proc.mem_used_bytes))
            if proc.sm_util_pct is not None:
                sm_points.append(NumberDataPoint(time_unix_nano=s.time_ns, attributes=attrs,
                                                 as_int=proc.sm_util_pct))
    if mem_points:
        metrics.append(_number_metric(PROCESS_MEMORY, "By", mem_points, False))
    if sm_points:
        metrics.append(_number_metric(PROCESS_SM, "%", sm_points, False))
    return metrics_request(resource_attrs, metrics)


def metrics_request(resource_attrs: Mapping[str, Any], metrics: Sequence[Metric]) -> bytes:
    request = ExportMetricsServiceRequest(resource_metrics=[
        ResourceMetrics(resource=resource(resource_attrs),
                        scope_metrics=[ScopeMetrics(scope=scope(), metrics=metrics)])
    ])
    return request.SerializeToString()


def _gpu_attrs(s: GpuSample) -> list[KeyValue]:
    return [
        KeyValue(key="gpu.uuid", value=AnyValue(string_value=s.uuid)),
        KeyValue(key="gpu.index", value=AnyValue(int_value=s.index)),
        KeyValue(key="gpu.name", value=AnyValue(string_value=s.name)),
    ]


def _number_metric(name: str, unit: str, points: list[NumberDataPoint], is_sum: bool) -> Metric:
    metric = Metric(name=name, unit=unit)
    if is_sum:
        metric.sum.data_points.extend(points)
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
    else:
        metric.gauge.data_points.extend(points)
    return metric
