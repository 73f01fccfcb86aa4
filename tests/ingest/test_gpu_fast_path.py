"""GPU points read column-wise (`api.ingest.gpu_points`) give exactly what the plain
per-point code gave: the same rows in the same order (the rollup views' anyLast reads that
order), the same rejections with their reasons in the same order, and the same count of
truncated attributes. The plain code is kept here as the reference; requests are written
the way the collector writes them (`collector.wire`), mixed with points in other layouts."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from api.ingest.metrics import GPU_FIELDS, GPU_SCHEMA, PROCESS_FIELDS, normalise_metrics
from api.ingest.spans import AttributeDecoder, resource_of
from collector import wire
from tests.otlp import NS, attributes

NOW = 1_800_000_000 * NS
OLDEST = NOW - 30 * 86_400 * NS
_FUTURE_SLACK_NS = 86_400 * NS


# --- the reference: the per-point code as it was ---------------------------------------------


def _check_time(time_ns: int, now: int, oldest: int) -> str | None:
    if time_ns <= 0:
        return "missing time"
    if time_ns > now + _FUTURE_SLACK_NS:
        return "time is more than a day in the future"
    if time_ns < oldest:
        return "time is older than the retention period"
    return None


def reference(
    request: ExportMetricsServiceRequest, max_bytes: int, now: int = NOW, oldest: int = OLDEST
) -> tuple[list[dict[str, Any]], Counter[str], int]:
    decoder = AttributeDecoder(max_bytes)
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    rejected: Counter[str] = Counter()
    for rm in request.resource_metrics:
        resource = resource_of(decoder.decode(rm.resource.attributes))
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind not in ("gauge", "sum") or metric.name not in {**GPU_FIELDS, **PROCESS_FIELDS}:
                    continue
                points = getattr(metric, kind).data_points
                _reference_points(rows, rejected, resource, metric.name, points, decoder, now, oldest)
    table = []
    for (cluster, host, uuid, time_ns), row in rows.items():
        procs = sorted(row["_procs"].items()) if "_procs" in row else ()
        out = {"time": time_ns // 1_000_000, "cluster": cluster, "host": host, "gpu_uuid": uuid}
        out.update({name: row.get(name) for name in GPU_SCHEMA.names[4:20]})
        out["proc_pids"] = [pid for pid, _ in procs]
        out["proc_mem_bytes"] = [p.get("mem", 0) for _, p in procs]
        out["proc_sm_pct"] = [p.get("sm", 0) for _, p in procs]
        table.append(out)
    return table, rejected, decoder.truncated


def _reference_points(
    rows: dict[tuple[Any, ...], dict[str, Any]],
    rejected: Counter[str],
    resource: Any,
    name: str,
    points: Any,
    decoder: AttributeDecoder,
    now: int,
    oldest: int,
) -> None:
    proc_field = PROCESS_FIELDS.get(name)
    if proc_field is None:
        column, low, high = GPU_FIELDS[name]
    else:
        column, low, high = "", 0, (100 if proc_field == "sm" else 2**63)
    for point in points:
        attrs = decoder.decode(point.attributes)
        uuid = attrs.get("gpu.uuid")
        if not uuid:
            rejected["GPU data point has no gpu.uuid"] += 1
            continue
        reason = _check_time(point.time_unix_nano, now, oldest)
        if reason:
            rejected[reason] += 1
            continue
        which = point.WhichOneof("value")
        value = (
            float(point.as_int) if which == "as_int" else point.as_double if which == "as_double" else None
        )
        if value is None or not math.isfinite(value):
            rejected[f"{name}: value is missing or not finite"] += 1
            continue
        if proc_field is not None:
            pid = attrs.get("process.pid")
            if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < 2**32:
                rejected[f"{name}: process.pid is missing or not a pid"] += 1
                continue
            if not 0 <= value <= high:
                rejected[f"{name}: value {value:g} is out of range"] += 1
                continue
        elif not low <= value <= high:
            rejected[f"{name}: value {value:g} is outside {low:g}–{high:g}"] += 1
            continue
        key = (resource.cluster, resource.host, str(uuid), point.time_unix_nano)
        row = rows.get(key)
        if row is None:
            index = attrs.get("gpu.index", 0)
            row = rows[key] = {
                "gpu_index": int(index) if type(index) in (int, float) and 0 <= index < 65536 else 0,
                "gpu_name": str(attrs.get("gpu.name", "")),
                "deployment": resource.named_deployment,
            }
        if proc_field is not None:
            row.setdefault("_procs", {}).setdefault(pid, {})[proc_field] = int(value)
        else:
            row[column] = int(round(value))


# --- generated requests ------------------------------------------------------------------------

# GPUs whose attributes encode to the same length, so a metric of them is read column-wise
# (a collector's host), and GPUs whose attributes don't (points then take the per-point loop).
SAME = [
    {"gpu.uuid": "GPU-aaaa", "gpu.index": 0, "gpu.name": "NVIDIA-H10"},
    {"gpu.uuid": "GPU-bbbb", "gpu.index": 1, "gpu.name": "NVIDIA-H10"},
    {"gpu.uuid": "GPU-aaaa", "gpu.index": 3, "gpu.name": "renamed"},  # same GPU, other facts
    {"gpu.uuid": "GPU-cccc", "gpu.index": 99, "gpu.name": "NVIDIA-H20"},
    {"gpu.uuid": "", "gpu.index": 4, "gpu.name": "NVIDIA-H10"},  # no GPU id
    {"gpu.index": 5, "gpu.uuid": "GPU-eeee", "gpu.name": "NVIDIA-H10"},  # another attribute first
    {"gpu.uuid": "GPU-ffff", "gpu.index": 9.5, "gpu.name": ""},  # a double index
]
ODD = [
    {"gpu.uuid": "GPU-dddd", "gpu.index": True, "gpu.name": 7},
    {"gpu.uuid": 42, "gpu.index": 70_000},
    {"gpu.uuid": "GPU-aaaa"},
]
GPUS = SAME + ODD
PIDS = [4242, 4243, 9999, None, 0, 2**32 - 1, 2**32, -1, True, "17"]
SAME_PIDS = 3  # the first ones encode to the same length
times = st.sampled_from(
    [
        NOW - 60 * NS,
        NOW - 59 * NS + 1,
        NOW,
        NOW + _FUTURE_SLACK_NS,
        NOW + _FUTURE_SLACK_NS + 1,
        OLDEST,
        OLDEST - 1,
        0,
        1,
        2**64 - 1,
    ]
)
values = st.one_of(
    st.sampled_from(
        [0, 1, 20, 100, 101, -1, 255, 256, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, -(2**63)]
    ),
    st.sampled_from(
        [
            0.5,
            1.5,
            2.5,
            99.5,
            100.4,
            100.6,
            -0.0,
            -0.4,
            math.nan,
            math.inf,
            -math.inf,
            2.0**63,
            2.0**64,
            1e-300,
        ]
    ),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
names = st.sampled_from([*GPU_FIELDS, *PROCESS_FIELDS])


def _points(same: bool) -> st.SearchStrategy[list[tuple[int, int, Any, int]]]:
    gpus = st.integers(0, len(SAME) - 1) if same else st.integers(0, len(GPUS) - 1)
    pids = st.integers(0, SAME_PIDS - 1) if same else st.integers(0, len(PIDS) - 1)
    # A time of 0 is left out of the encoding, which changes the layout: rare in a run.
    when = times.filter(lambda t: t != 0) if same else times
    return st.sampled_from([0, 3, 16, 40]).flatmap(
        lambda n: st.lists(st.tuples(gpus, when, values, pids), min_size=n, max_size=n + 8)
    )


def _pad_names() -> None:
    """Lengthen names until every SAME set encodes to the same length."""
    longest = max(len(_attrs(g, None)) for g in range(len(SAME)))
    for gpu in SAME:
        while len(b"".join(kv.SerializeToString() for kv in attributes(gpu))) + 3 * 2 < longest:
            gpu["gpu.name"] = str(gpu["gpu.name"]) + "-"


def _attrs(gpu: int, pid: int | None) -> bytes:
    kvs = attributes(GPUS[gpu])
    if pid is not None and PIDS[pid] is not None:
        kvs += attributes({"process.pid": PIDS[pid]})
    return b"".join(wire.field(b"\x3a", kv.SerializeToString()) for kv in kvs)


_pad_names()


def test_the_same_length_gpus_do_encode_to_the_same_length() -> None:
    assert len({len(_attrs(g, None)) for g in range(len(SAME))}) == 1
    assert len({len(_attrs(g, p)) for g in range(len(SAME)) for p in range(SAME_PIDS)}) == 1


def _wire_metric(name: str, pts: list[tuple[int, int, Any, int]], cumulative: bool) -> bytes:
    encoded = []
    for gpu, time_ns, value, pid in pts:
        attrs = _attrs(gpu, pid if name in PROCESS_FIELDS else None)
        if isinstance(value, float):
            encoded.append(wire.double_point(attrs, time_ns, value))
        else:
            encoded.append(wire.int_point(attrs, time_ns, value))
    return wire.metric(name, "1", encoded, cumulative_sum=cumulative)


def _other_layout(name: str, pts: list[tuple[int, int, Any, int]], extra: str) -> bytes:
    """Points built as protobuf objects, with fields the collector never sets."""
    metric = Metric(name=name)
    for gpu, time_ns, value, pid in pts:
        p = metric.gauge.data_points.add(time_unix_nano=time_ns)
        if isinstance(value, float):
            p.as_double = value
        else:
            p.as_int = value
        attrs = dict(GPUS[gpu])
        if name in PROCESS_FIELDS and PIDS[pid] is not None:
            attrs["process.pid"] = PIDS[pid]
        p.attributes.extend(attributes(attrs))
        if extra == "start":
            p.start_time_unix_nano = max(0, time_ns - NS)
        elif extra == "flags":
            p.flags = 1
        elif extra == "exemplar":
            p.exemplars.add(as_double=1.0)
    return metric.SerializeToString()


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    request = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rm = request.resource_metrics.add()
        host = draw(st.sampled_from(["node-1", "node-2"]))
        rm.resource.attributes.extend(attributes({"host.name": host, "inferwatch.deployment": host[-1]}))
        sm = rm.scope_metrics.add(scope=InstrumentationScope(name="t"))
        for _ in range(draw(st.integers(1, 4))):
            name = draw(names)
            same = draw(st.booleans())
            pts = draw(_points(same))
            if draw(st.booleans()):  # a run of seconds, as a collector sends
                pts = [(g, t + i * NS if NS < t < 2**63 else t, v, p) for i, (g, t, v, p) in enumerate(pts)]
            layout = draw(st.sampled_from(["wire", "wire", "wire", "sum", "start", "flags", "exemplar"]))
            if layout in ("wire", "sum"):
                raw = _wire_metric(name, pts, cumulative=layout == "sum")
            else:
                raw = _other_layout(name, pts, layout)
            sm.metrics.append(Metric.FromString(raw))
    return request.SerializeToString()


def _got(
    request: ExportMetricsServiceRequest, max_bytes: int
) -> tuple[list[dict[str, Any]], Counter[str], int]:
    batch = normalise_metrics(request, max_attribute_bytes=max_bytes, now_ns=NOW, oldest_ns=OLDEST)
    table = batch.gpu_table().to_pylist()
    for row in table:
        row["time"] = round(row["time"].timestamp() * 1000)
    assert len(batch.gpu_rows) == len(table)
    return table, batch.rejected, batch.truncated_attributes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.sampled_from([8, 64]))
def test_column_wise_reading_gives_the_rows_and_reasons_of_the_per_point_code(
    body: bytes, max_bytes: int
) -> None:
    request = ExportMetricsServiceRequest.FromString(body)
    rows, rejected, truncated = _got(request, max_bytes)
    want_rows, want_rejected, want_truncated = reference(request, max_bytes)
    assert rows == want_rows
    assert list(rejected.items()) == list(want_rejected.items())
    assert truncated == want_truncated


def test_a_collector_minute_is_read_column_wise_and_matches() -> None:
    """The benchmark's shape: 8 GPUs × 60 s, every field, a process on each GPU."""
    from bench.ingest import make_gpu_requests

    body = make_gpu_requests(1, seed=11)[0]
    request = ExportMetricsServiceRequest.FromString(body)
    now = max(
        p.time_unix_nano for p in request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    )
    batch = normalise_metrics(request, max_attribute_bytes=8192, now_ns=now, oldest_ns=0)
    got = batch.gpu_table().to_pylist()
    assert len(got) == 480 and not batch.rejected
    want, _, _ = reference(request, 8192, now, 0)
    for row in got:
        row["time"] = round(row["time"].timestamp() * 1000)
    assert got == want
