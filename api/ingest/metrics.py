"""OTLP metrics → GPU sample rows and engine metric rows.

GPU metrics (`gpu.*`, docs/telemetry.md) arrive one metric per field; the fields of one
GPU at one instant are joined into one wide `gpu_samples` row (`api.ingest.gpu_points`,
which reads a collector's points column-wise; other points go one by one here). Engine
metrics are mapped to canonical names (`api.ingest.engine_names`) and stored one value per
row; histograms become `_bucket` (cumulative, by `le`), `_sum` and `_count` rows.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from api.ingest import gpu_wire
from api.ingest.body import Encoding, check_count, parse
from api.ingest.engine_names import canonical
from api.ingest.gpu_points import (
    Check,
    Chunk,
    GpuRows,
    accept,
    gpu_index,
    read_points,
    reason_text,
    valid_pid,
)
from api.ingest.gpu_wire import WireRows
from api.ingest.spans import AttributeDecoder, Resource, resource_of

# metric name → (column, lowest allowed, highest allowed)
GPU_FIELDS: dict[str, tuple[str, float, float]] = {
    "gpu.utilization": ("util_gpu_pct", 0, 100),
    "gpu.memory.utilization": ("util_mem_pct", 0, 100),
    "gpu.memory.used": ("mem_used_bytes", 0, 2**63),
    "gpu.memory.total": ("mem_total_bytes", 0, 2**63),
    "gpu.power.draw": ("power_mw", 0, 2**32 - 1),
    "gpu.power.limit": ("power_limit_mw", 0, 2**32 - 1),
    "gpu.energy.consumed": ("energy_mj", 0, 2**63),
    "gpu.clock.sm": ("sm_clock_mhz", 0, 2**16 - 1),
    "gpu.temperature": ("temperature_c", 0, 255),
    "gpu.gpm.sm_activity": ("sm_activity_pct", 0, 100),
    "gpu.gpm.sm_occupancy": ("sm_occupancy_pct", 0, 100),
    "gpu.gpm.dram_bandwidth": ("dram_bw_pct", 0, 100),
    "gpu.gpm.tensor_activity": ("tensor_active_pct", 0, 100),
}
PROCESS_FIELDS = {"gpu.process.memory.used": "mem", "gpu.process.sm_utilization": "sm"}

GPU_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("ms", tz="UTC")),
        ("cluster", pa.string()),
        ("host", pa.string()),
        ("gpu_uuid", pa.string()),
        ("gpu_index", pa.uint16()),
        ("gpu_name", pa.string()),
        ("deployment", pa.string()),
        ("util_gpu_pct", pa.uint8()),
        ("util_mem_pct", pa.uint8()),
        ("mem_used_bytes", pa.uint64()),
        ("mem_total_bytes", pa.uint64()),
        ("power_mw", pa.uint32()),
        ("power_limit_mw", pa.uint32()),
        ("energy_mj", pa.uint64()),
        ("sm_clock_mhz", pa.uint16()),
        ("temperature_c", pa.uint8()),
        ("sm_activity_pct", pa.uint8()),
        ("sm_occupancy_pct", pa.uint8()),
        ("dram_bw_pct", pa.uint8()),
        ("tensor_active_pct", pa.uint8()),
        ("proc_pids", pa.list_(pa.uint32())),
        ("proc_mem_bytes", pa.list_(pa.uint64())),
        ("proc_sm_pct", pa.list_(pa.uint8())),
    ]
)

ENGINE_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("ms", tz="UTC")),
        ("cluster", pa.string()),
        ("host", pa.string()),
        ("deployment", pa.string()),
        ("instance", pa.string()),
        ("engine", pa.string()),
        ("metric", pa.string()),
        ("le", pa.float64()),
        ("labels", pa.map_(pa.string(), pa.string())),
        ("value", pa.float64()),
    ]
)

# The compiled reader's view of the GPU fields: a code per metric name (`_BOUNDS`, below
# `_bounds`, gives each code's column and range) and each column's width in bytes.
FIELD_CODES = {name: code for code, name in enumerate([*GPU_FIELDS, *PROCESS_FIELDS])}
_COLUMNS = GPU_SCHEMA.names[7:20]
_PROCESS_COLUMNS = {"mem": -1, "sm": -2}
_WIDTHS = tuple(GPU_SCHEMA.field(name).type.bit_width // 8 for name in _COLUMNS)

_FUTURE_SLACK_NS = 86_400 * 10**9
_KEEP_LABELS = ("method", "model_name", "engine", "finished_reason", "version")


@dataclass(slots=True)
class MetricBatch:
    gpu_rows: GpuRows | WireRows = field(default_factory=GpuRows)
    """One row per GPU and instant; `len` counts them."""
    engine_rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    ignored: int = 0
    received: int = 0
    truncated_attributes: int = 0

    @property
    def accepted(self) -> int:
        return self.received - self.ignored - self.rejected_count

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())

    def gpu_table(self) -> pa.Table:
        return self.gpu_rows.table(GPU_SCHEMA)

    def gpu_token(self) -> str:
        """The dedup token of the GPU rows: the same for a retried request."""
        return self.gpu_rows.token()

    def engine_table(self) -> pa.Table:
        columns: list[Any] = list(zip(*self.engine_rows, strict=True)) if self.engine_rows else [[]] * 10
        return pa.Table.from_arrays(
            [pa.array(list(col), type=f.type) for col, f in zip(columns, ENGINE_SCHEMA, strict=True)],
            schema=ENGINE_SCHEMA,
        )

    def engine_keys(self) -> list[str]:
        return [f"{r[0]}|{r[2]}|{r[4]}|{r[6]}|{r[7]}|{sorted(r[8])}" for r in self.engine_rows]


def read_metrics(
    data: bytes,
    encoding: Encoding,
    *,
    max_items: int,
    max_attribute_bytes: int,
    now_ns: int,
    oldest_ns: int,
    known: gpu_wire.Known | None = None,
) -> MetricBatch:
    """An OTLP metrics request body (decompressed) to rows, or `BadRequest` when it does not
    decode or holds more than `max_items` data points.

    Protobuf goes to the compiled reader first (`api.ingest.gpu_wire`): it reads the GPU
    points and hands back the rest as bytes; anything it does not read as upb would, upb
    parses whole (refusing it with its own reason) for the Python path, as it does a
    request over `max_items`, so the reason given is the one upb and the count give.
    `known`: attribute sets decoded for earlier requests (the service keeps one)."""
    if encoding is Encoding.PROTOBUF:
        found = gpu_wire.scan(data, FIELD_CODES)
        if found is not None and found.points <= max_items:
            batch = _from_scan(found, max_attribute_bytes, now_ns, oldest_ns, known or gpu_wire.Known())
            if batch is not None:
                return batch
    request = parse(data, encoding, ExportMetricsServiceRequest)
    count = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                count += len(getattr(m, kind).data_points) if kind else 0
    check_count(count, max_items, "data points")
    return normalise_metrics(
        request, max_attribute_bytes=max_attribute_bytes, now_ns=now_ns, oldest_ns=oldest_ns
    )


def _from_scan(
    found: gpu_wire.Scan, max_attribute_bytes: int, now_ns: int, oldest_ns: int, known: gpu_wire.Known
) -> MetricBatch | None:
    """The batch from the compiled reader's scan; None where upb refuses a part it handed
    back (the caller then lets upb refuse the whole request)."""
    decoder = AttributeDecoder(max_attribute_bytes)
    try:
        resources = [known.resource(r, decoder) for r in found.resources]
        sets = [known.attributes(s, decoder) for s in found.sets]
        others = {i: Metric.FromString(item[1]) for i, item in enumerate(found.items) if len(item) == 2}
    except (DecodeError, RuntimeError, ValueError):  # what `parse` turns into its 400
        return None
    batch = MetricBatch()
    rows = GpuRows()  # numbers the GPUs and labels
    uses = np.bincount(found.set_of_point, minlength=len(sets)).tolist()
    n = len(sets)
    gpu, pid = np.full(n, -1, np.int32), np.full(n, -1, np.int64)
    index, name, deployment = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    for i, ((attrs, truncated), owner, count) in enumerate(
        zip(sets, found.set_resource.tolist(), uses, strict=True)
    ):
        decoder.truncated += truncated * count  # once per point, as the per-point loop counts
        resource = resources[owner]
        uuid = attrs.get("gpu.uuid")
        if uuid:
            gpu[i] = rows.gpu_id(resource.cluster, resource.host, str(uuid))
        candidate = attrs.get("process.pid")
        if valid_pid(candidate):
            pid[i] = candidate
        index[i] = gpu_index(attrs)
        name[i] = rows.label_id(str(attrs.get("gpu.name", "")))
        deployment[i] = rows.label_id(resource.named_deployment)
    joined = gpu_wire.join(
        found,
        gpu_wire.SetFacts(gpu, pid, index, name, deployment),
        rows.gpus,
        rows.labels,
        _BOUNDS,
        _WIDTHS,
        now_ns + _FUTURE_SLACK_NS,
        oldest_ns,
    )
    batch.gpu_rows = joined.rows
    reasons = joined.reasons
    for i, item in enumerate(found.items):
        if len(item) == 2:
            _metric(batch, resources[item[0]], others[i], decoder, now_ns, oldest_ns)
            continue
        _, metric_name, start, end = item
        batch.received += end - start
        if joined.rejected:
            for at in (np.flatnonzero(reasons[start:end]) + start).tolist():
                batch.rejected[_gpu_reason(metric_name, int(reasons[at]), found, at, now_ns, oldest_ns)] += 1
    batch.truncated_attributes = decoder.truncated
    return batch


def _gpu_reason(name: str, code: int, found: gpu_wire.Scan, at: int, now_ns: int, oldest_ns: int) -> str:
    """The per-point loop's words for why the compiled join turned point `at` away."""
    _, low, high = _bounds(name)
    return reason_text(
        code,
        name,
        float(found.value[at]),
        int(found.time[at]),
        name in PROCESS_FIELDS,
        low,
        high,
        lambda t: _check_time(t, now_ns, oldest_ns) or "",
    )


def normalise_metrics(
    request: ExportMetricsServiceRequest, *, max_attribute_bytes: int, now_ns: int, oldest_ns: int = 0
) -> MetricBatch:
    decoder = AttributeDecoder(max_attribute_bytes)
    batch = MetricBatch()
    for resource_metrics in request.resource_metrics:
        resource = resource_of(decoder.decode(resource_metrics.resource.attributes))
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _metric(batch, resource, metric, decoder, now_ns, oldest_ns)
    batch.truncated_attributes = decoder.truncated
    return batch


def _points(metric: Any) -> tuple[str, Any]:
    kind = metric.WhichOneof("data")
    if kind in ("gauge", "sum", "histogram"):
        return kind, getattr(metric, kind).data_points
    return kind or "none", []


def _number(point: Any) -> float | None:
    which = point.WhichOneof("value")
    if which == "as_int":
        return float(point.as_int)
    if which == "as_double":
        return point.as_double
    return None


def _check_time(time_ns: int, now_ns: int, oldest_ns: int = 0) -> str | None:
    if time_ns <= 0:
        return "missing time"
    if time_ns > now_ns + _FUTURE_SLACK_NS:
        return "time is more than a day in the future"
    if time_ns < oldest_ns:
        return "time is older than the retention period"
    return None


def _metric(
    batch: MetricBatch,
    resource: Resource,
    metric: Any,
    decoder: AttributeDecoder,
    now_ns: int,
    oldest_ns: int = 0,
) -> None:
    name = metric.name
    kind, points = _points(metric)
    if kind in ("summary", "exponential_histogram", "none"):
        # Counted so nothing vanishes silently; no engine we read sends these for state we use.
        batch.received += max(1, len(getattr(getattr(metric, kind, None), "data_points", [])))
        batch.ignored += max(1, len(getattr(getattr(metric, kind, None), "data_points", [])))
        return
    if name in GPU_FIELDS or name in PROCESS_FIELDS:
        batch.received += len(points)
        if kind == "histogram":
            if points:
                batch.rejected[f"{name}: expected a gauge or sum, got a histogram"] += len(points)
            return
        _gpu_points(batch, resource, name, getattr(metric, kind), decoder, now_ns, oldest_ns)
        return
    for point in points:
        batch.received += 1
        labels = {k: str(v) for k, v in decoder.decode_shared(point.attributes).items()}
        targets = canonical(name, labels)
        if not targets:
            batch.ignored += 1
            continue
        reason = _check_time(point.time_unix_nano, now_ns, oldest_ns)
        if reason:
            batch.rejected[reason] += 1
            continue
        kept = {k: labels[k] for k in _KEEP_LABELS if k in labels}
        for target in targets:
            reason = _engine_point(batch, resource, target, kind, point, labels, kept)
            if reason:
                batch.rejected[reason] += 1
                break


def _engine_point(
    batch: MetricBatch,
    resource: Resource,
    target: Any,
    kind: str,
    point: Any,
    labels: dict[str, str],
    kept: dict[str, str],
) -> str | None:
    base = (
        point.time_unix_nano // 1_000_000,
        resource.cluster,
        resource.host,
        resource.deployment,
        resource.instance,
        target.engine,
    )
    pairs = list(kept.items())
    if kind == "histogram":
        if len(point.bucket_counts) != len(point.explicit_bounds) + 1:
            return f"{target.name}: histogram bucket counts do not match its bounds"
        if point.HasField("sum") and not math.isfinite(point.sum):
            return f"{target.name}: histogram sum is not finite"
        cumulative = 0
        for bound, bucket in zip([*point.explicit_bounds, math.inf], point.bucket_counts, strict=True):
            cumulative += bucket
            batch.engine_rows.append((*base, f"{target.name}_bucket", bound, pairs, float(cumulative)))
        batch.engine_rows.append((*base, f"{target.name}_sum", 0.0, pairs, point.sum))
        batch.engine_rows.append((*base, f"{target.name}_count", 0.0, pairs, float(point.count)))
        return None
    if target.value_label:
        try:
            value = float(labels[target.value_label])
        except (KeyError, ValueError):
            return f"{target.name}: label {target.value_label!r} is missing or not a number"
    else:
        number = _number(point)
        if number is None:
            return f"{target.name}: data point has no value"
        value = number
    if not math.isfinite(value):
        return f"{target.name}: value is not finite"
    batch.engine_rows.append((*base, target.name, 0.0, pairs, value))
    return None


def _gpu_points(
    batch: MetricBatch,
    resource: Resource,
    name: str,
    data: Any,
    decoder: AttributeDecoder,
    now_ns: int,
    oldest_ns: int = 0,
) -> None:
    """The points of one GPU metric into the wide rows, one row per GPU and instant: read
    column-wise where their encoding allows (`api.ingest.gpu_points`), else point by point."""
    column, low, high = _bounds(name)
    points = data.data_points
    rows = batch.gpu_rows
    assert isinstance(rows, GpuRows)  # the compiled reader joins every GPU gauge and sum itself
    read = read_points(data, len(points), decoder)
    if read is not None:
        check = Check(
            name=name,
            column=column,
            process=name in PROCESS_FIELDS,
            low=float(low),
            high=float(high),
            cluster=resource.cluster,
            host=resource.host,
            deployment=resource.named_deployment,
            latest_ns=now_ns + _FUTURE_SLACK_NS,
            oldest_ns=oldest_ns,
        )
        accept(read, check, rows, batch.rejected, lambda t: _check_time(t, now_ns, oldest_ns) or "")
        return
    _gpu_points_one_by_one(batch, rows, resource, name, points, decoder, now_ns, oldest_ns)


def _bounds(name: str) -> tuple[str, float, float]:
    """A GPU metric's column (or process field, "mem"/"sm") and its allowed range."""
    proc_field = PROCESS_FIELDS.get(name)
    if proc_field is None:
        return GPU_FIELDS[name]
    return proc_field, 0, (100 if proc_field == "sm" else 2**63)


_BOUNDS = [
    (_PROCESS_COLUMNS[column] if name in PROCESS_FIELDS else _COLUMNS.index(column), float(low), float(high))
    for name in FIELD_CODES
    for column, low, high in [_bounds(name)]
]
"""Per field code, for the compiled join: its column (0..12; -1/-2 a process's memory/SM
share) and its allowed range, as `_bounds` gives them."""


def _gpu_points_one_by_one(
    batch: MetricBatch,
    rows: GpuRows,
    resource: Resource,
    name: str,
    points: Any,
    decoder: AttributeDecoder,
    now_ns: int,
    oldest_ns: int = 0,
) -> None:
    """The per-point loop, for points not in the collector's fixed layout (and few points).
    Checks are inlined, in the order of the reasons given."""
    column, low, high = _bounds(name)
    proc_field = PROCESS_FIELDS.get(name)
    rejected = batch.rejected
    cluster, host = resource.cluster, resource.host
    latest_ns = now_ns + _FUTURE_SLACK_NS
    decode = decoder.decode_shared
    isfinite = math.isfinite
    gpus: list[int] = []
    times: list[int] = []
    values: list[int] = []
    indexes: list[int] = []
    names: list[int] = []
    pids: list[int] = []
    for point in points:
        attrs = decode(point.attributes)
        uuid = attrs.get("gpu.uuid")
        if not uuid:
            rejected["GPU data point has no gpu.uuid"] += 1
            continue
        time_ns = point.time_unix_nano
        if time_ns <= 0 or time_ns > latest_ns or time_ns < oldest_ns:
            rejected[_check_time(time_ns, now_ns, oldest_ns) or ""] += 1
            continue
        which = point.WhichOneof("value")
        if which == "as_int":
            value = float(point.as_int)
        elif which == "as_double":
            value = point.as_double
        else:
            rejected[f"{name}: value is missing or not finite"] += 1
            continue
        if not isfinite(value):
            rejected[f"{name}: value is missing or not finite"] += 1
            continue
        if proc_field is not None:
            pid: int = attrs.get("process.pid")  # type: ignore[assignment]  # checked next
            if not valid_pid(pid):
                rejected[f"{name}: process.pid is missing or not a pid"] += 1
                continue
            if not 0 <= value <= high:
                rejected[f"{name}: value {value:g} is out of range"] += 1
                continue
            pids.append(pid)
            values.append(int(value))
        elif not low <= value <= high:
            rejected[f"{name}: value {value:g} is outside {low:g}–{high:g}"] += 1
            continue
        else:
            # Every stored GPU field is a whole number: GPM percentages (doubles on the wire)
            # are kept at 1 % resolution, like NVML's own utilisation (docs/telemetry.md).
            values.append(int(round(value)))
        gpus.append(rows.gpu_id(cluster, host, str(uuid)))
        times.append(time_ns)
        indexes.append(gpu_index(attrs))
        names.append(rows.label_id(str(attrs.get("gpu.name", ""))))
    rows.add(
        Chunk(
            column=column,
            process=proc_field is not None,
            gpu=np.array(gpus, np.int64),
            time=np.array(times, np.int64),
            value=np.array(values, np.uint64),
            index=np.array(indexes, np.int64),
            name=np.array(names, np.int64),
            deployment=rows.label_id(resource.named_deployment),
            pid=np.array(pids, np.int64),
        )
    )
