"""Prometheus text exposition -> OTLP metrics, per docs/telemetry.md ("Engine metrics").

Each family keeps its Prometheus name with a trailing ``_total`` removed; a counter becomes a
monotonic cumulative sum, a gauge (or an untyped series) a gauge, a histogram an OTLP
histogram, a summary an OTLP summary. Labels become data point attributes. ``*_created``
series are not sent: they become the start time of their counter or histogram.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)
from prometheus_client.parser import text_string_to_metric_families

# Families worth sending from an engine's /metrics: the engines' own series, not the
# process_* / python_* / http_* series that every Python or Rust server also exposes.
ENGINE_PREFIXES = ("vllm:", "sglang:", "tgi_", "nv_", "trtllm_", "trtllm:")

_HAS_START = ("counter", "histogram", "summary")


def parse_families(text: str) -> list[Any]:
    """Parse Prometheus text format 0.0.4. Raises ValueError on malformed text."""
    try:
        return list(text_string_to_metric_families(text))
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"not Prometheus text: {exc}") from None


def is_engine_family(name: str) -> bool:
    return name.startswith(ENGINE_PREFIXES)


def families_to_metrics(
    families: Iterable[Any],
    time_ns: int,
    default_start_ns: int,
    keep: Callable[[str], bool] = is_engine_family,
) -> list[Metric]:
    """OTLP metrics for the families whose name ``keep`` accepts.

    ``default_start_ns`` is the start time of cumulative series that expose no ``_created``.
    Samples with a non-finite value are left out (they carry no information the store can use).
    """
    families = list(families)
    typed = {f.name: f.type for f in families}
    created: dict[tuple[str, frozenset[tuple[str, str]]], int] = {}
    for fam in families:
        base = fam.name[: -len("_created")] if fam.name.endswith("_created") else None
        if base is not None and typed.get(base) in _HAS_START:
            for s in fam.samples:
                created[(base, _label_key(s.labels))] = int(s.value * 1e9)
    metrics = []
    for fam in families:
        base = fam.name[: -len("_created")] if fam.name.endswith("_created") else None
        if base is not None and typed.get(base) in _HAS_START:
            continue
        if not keep(fam.name):
            continue

        def start_of(labels: dict[str, str], _name: str = fam.name) -> int:
            return created.get((_name, _label_key(labels)), default_start_ns)

        metric = _convert(fam, time_ns, start_of)
        if metric is not None:
            metrics.append(metric)
    return metrics


def count_points(metrics: Iterable[Metric]) -> int:
    """Data points in a list of metrics (what the collector counts as items)."""
    total = 0
    for m in metrics:
        kind = m.WhichOneof("data")
        total += len(getattr(m, kind).data_points) if kind else 0
    return total


def _label_key(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset((k, v) for k, v in labels.items() if k not in ("le", "quantile"))


def _attrs(labels: dict[str, str], drop: str = "") -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in sorted(labels.items()) if k != drop]


def _stamp(sample: Any, time_ns: int) -> int:
    ts = sample.timestamp
    if ts is None:
        return time_ns
    # prometheus_client gives a float of seconds, or a Timestamp with sec and nsec
    return int(ts.sec * 10**9 + ts.nsec) if hasattr(ts, "sec") else int(float(ts) * 1e9)


def _strip_total(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") else name


def _convert(fam: Any, time_ns: int, start_of: Callable[[dict[str, str]], int]) -> Metric | None:
    if fam.type == "histogram":
        return _histogram(fam, time_ns, start_of)
    if fam.type == "summary":
        return _summary(fam, time_ns, start_of)
    metric = Metric(name=_strip_total(fam.name), description=fam.documentation or "")
    points = []
    for s in fam.samples:
        if not math.isfinite(s.value) or s.name.endswith("_created"):
            continue
        point = NumberDataPoint(
            time_unix_nano=_stamp(s, time_ns), attributes=_attrs(s.labels), as_double=s.value
        )
        if fam.type == "counter":
            point.start_time_unix_nano = start_of(s.labels)
        points.append(point)
    if not points:
        return None
    if fam.type == "counter":
        metric.sum.data_points.extend(points)
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
    else:
        metric.gauge.data_points.extend(points)
    return metric


def _histogram(fam: Any, time_ns: int, start_of: Callable[[dict[str, str]], int]) -> Metric | None:
    series: dict[frozenset[tuple[str, str]], dict[str, Any]] = {}
    for s in fam.samples:
        entry = series.setdefault(_label_key(s.labels), {"labels": s.labels, "buckets": [], "time": None})
        entry["time"] = _stamp(s, time_ns)
        if s.name.endswith("_bucket"):
            entry["buckets"].append((_bound(s.labels.get("le", "+Inf")), s.value))
        elif s.name.endswith("_count"):
            entry["count"] = s.value
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
    points = []
    for entry in series.values():
        buckets = sorted(entry["buckets"])
        bounds = [b for b, _ in buckets if math.isfinite(b)]
        cumulative = [c for b, c in buckets if math.isfinite(b)]
        count = entry.get("count", buckets[-1][1] if buckets and math.isinf(buckets[-1][0]) else None)
        if count is None or not math.isfinite(count):
            continue
        # Prometheus buckets are cumulative; OTLP wants a count per bucket, the last one open-ended.
        per_bucket, previous = [], 0.0
        for c in [*cumulative, count]:
            per_bucket.append(int(max(0.0, c - previous)))
            previous = max(previous, c)
        point = HistogramDataPoint(
            attributes=_attrs(entry["labels"], drop="le"),
            start_time_unix_nano=start_of(entry["labels"]),
            time_unix_nano=entry["time"],
            count=int(count),
            explicit_bounds=bounds,
            bucket_counts=per_bucket,
        )
        if "sum" in entry and math.isfinite(entry["sum"]):
            point.sum = entry["sum"]
        points.append(point)
    if not points:
        return None
    metric = Metric(name=fam.name, description=fam.documentation or "")
    metric.histogram.data_points.extend(points)
    metric.histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
    return metric


def _summary(fam: Any, time_ns: int, start_of: Callable[[dict[str, str]], int]) -> Metric | None:
    series: dict[frozenset[tuple[str, str]], SummaryDataPoint] = {}
    for s in fam.samples:
        key = _label_key(s.labels)
        point = series.get(key)
        if point is None:
            point = series[key] = SummaryDataPoint(
                attributes=_attrs(s.labels, drop="quantile"),
                start_time_unix_nano=start_of(s.labels),
                time_unix_nano=_stamp(s, time_ns),
            )
        if not math.isfinite(s.value):
            continue
        if s.name.endswith("_count"):
            point.count = int(s.value)
        elif s.name.endswith("_sum"):
            point.sum = s.value
        elif "quantile" in s.labels:
            point.quantile_values.add(quantile=float(s.labels["quantile"]), value=s.value)
    if not series:
        return None
    metric = Metric(name=fam.name, description=fam.documentation or "")
    metric.summary.data_points.extend(series.values())
    return metric


def _bound(le: str) -> float:
    return math.inf if le in ("+Inf", "Inf", "inf") else float(le)
