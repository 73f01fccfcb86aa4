"""GPU data points, column-wise: the hot path of GPU ingest.

A collector's request holds one metric per GPU field, each with a point per GPU and second
(~6,400 points for a minute of an 8-GPU host). Reading them one protobuf attribute at a time
costs about a microsecond a point before any check, so each metric's points are read from
their wire encoding at once instead: the collector writes every point of a metric in one
layout (the same attributes, a fixed64 time, an 8-byte value), so they form a table of
fixed-width records that numpy slices into times, values and attribute sets. Anything else
(other layouts, few points) goes through the plain per-point loop in `api.ingest.metrics`,
and both feed the same `GpuRows`, which joins the points into one row per GPU and instant.

Both paths give the same rows, rejections (reasons, counts and their order) and truncation
counts: tests/ingest/test_gpu_fast_path.py compares them on generated requests.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import pyarrow as pa
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint

from api.ingest.spans import AttributeDecoder

FAST_MIN_POINTS = 16
"""Below this many points a metric takes the per-point loop: numpy's fixed cost is larger."""

_POINT_TAG = 0x0A  # Gauge/Sum.data_points = 1, length-delimited
_START_TAG = 0x11  # NumberDataPoint.start_time_unix_nano = 2, fixed64
_TIME_TAG = 0x19  # NumberDataPoint.time_unix_nano = 3, fixed64
_DOUBLE_TAG = 0x21  # NumberDataPoint.as_double = 4, double
_INT_TAG = 0x31  # NumberDataPoint.as_int = 6, sfixed64


@dataclass(slots=True)
class Chunk:
    """The accepted points of one metric, in their order: `value` is the stored whole number;
    `index`, `name` (a label id) and `deployment` (a label id) fill a row the point creates."""

    column: str
    """The gpu_samples column, or "mem"/"sm" for a process field (then `pid` is set)."""
    process: bool
    gpu: np.ndarray
    time: np.ndarray
    value: np.ndarray
    index: np.ndarray
    name: np.ndarray
    deployment: int
    pid: np.ndarray
    """Per point, for a process field; empty otherwise."""


@dataclass(slots=True)
class _Joined:
    gpu: np.ndarray  # per row: id of (cluster, host, uuid)
    time: np.ndarray  # per row: ns
    first: np.ndarray  # per row: the point (over all chunks) that created it
    row_of_point: np.ndarray


class GpuRows:
    """Accepted GPU points of a request, joined into `gpu_samples` rows on demand."""

    __slots__ = ("_chunks", "_gpu_ids", "_gpus", "_joined", "_label_ids", "_labels")

    def __init__(self) -> None:
        self._gpus: list[tuple[str, str, str]] = []
        self._gpu_ids: dict[tuple[str, str, str], int] = {}
        self._labels: list[str] = []
        self._label_ids: dict[str, int] = {}
        self._chunks: list[Chunk] = []
        self._joined: _Joined | None = None

    def gpu_id(self, cluster: str, host: str, uuid: str) -> int:
        key = (cluster, host, uuid)
        found = self._gpu_ids.get(key)
        if found is None:
            found = self._gpu_ids[key] = len(self._gpus)
            self._gpus.append(key)
        return found

    @property
    def gpus(self) -> list[tuple[str, str, str]]:
        """(cluster, host, uuid) of each GPU id."""
        return self._gpus

    @property
    def labels(self) -> list[str]:
        """The text of each label id."""
        return self._labels

    def label_id(self, text: str) -> int:
        found = self._label_ids.get(text)
        if found is None:
            found = self._label_ids[text] = len(self._labels)
            self._labels.append(text)
        return found

    def add(self, chunk: Chunk) -> None:
        if len(chunk.gpu):
            self._chunks.append(chunk)
            self._joined = None

    def __len__(self) -> int:
        return len(self._join().gpu)

    def _join(self) -> _Joined:
        """Rows keyed by (GPU, time) in the order their first point came, as the per-point
        dict of rows had them (the views' anyLast reads rows in this order)."""
        if self._joined is not None:
            return self._joined
        if not self._chunks:
            empty = np.zeros(0, np.int64)
            self._joined = _Joined(empty, empty, empty, empty)
            return self._joined
        gpu = np.concatenate([c.gpu for c in self._chunks])
        time = np.concatenate([c.time for c in self._chunks])
        # One int64 per (GPU, time): GPU ids and distinct times both number fewer than the points.
        times, time_code = np.unique(time, return_inverse=True)
        key = gpu * len(times) + time_code.ravel()
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        firsts = first[order]
        self._joined = _Joined(gpu[firsts], time[firsts], firsts, rank[inverse.ravel()])
        return self._joined

    def token(self) -> str:
        j = self._join()
        return rows_token(self._gpus, j.gpu, j.time)

    def table(self, schema: pa.Schema) -> pa.Table:
        j = self._join()
        n = len(j.gpu)
        chunks = self._chunks
        rows = pa.array(j.gpu)
        columns: dict[str, Any] = {"time": pa.array(j.time // 1_000_000, type=schema.field("time").type)}
        for i, name in enumerate(("cluster", "host", "gpu_uuid")):
            columns[name] = pa.array([g[i] for g in self._gpus], pa.string()).take(rows)
        labels = pa.array(self._labels, pa.string())
        index = _concat([c.index for c in chunks])
        names = _concat([c.name for c in chunks])
        deployment = _concat([np.full(len(c.gpu), c.deployment, np.int64) for c in chunks])
        columns["gpu_index"] = pa.array(index[j.first], type=schema.field("gpu_index").type)
        columns["gpu_name"] = labels.take(pa.array(names[j.first]))
        columns["deployment"] = labels.take(pa.array(deployment[j.first]))
        starts = np.cumsum([0] + [len(c.gpu) for c in chunks]).tolist()
        by_column: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        procs: list[tuple[np.ndarray, Chunk]] = []
        for start, chunk in zip(starts, chunks, strict=False):
            at = j.row_of_point[start : start + len(chunk.gpu)]
            if chunk.process:
                procs.append((at, chunk))
            else:
                by_column.setdefault(chunk.column, []).append((at, chunk.value))
        for field in schema.names[7:20]:
            values, present = _last_per_key(by_column.get(field, []), n)
            kind = schema.field(field).type
            columns[field] = pa.array(values.astype(kind.to_pandas_dtype()), mask=~present, type=kind)
        columns.update(
            process_lists(
                _concat([at for at, _ in procs]),
                _concat([c.pid for _, c in procs]),
                _concat([np.full(len(at), c.column == "sm") for at, c in procs]).astype(bool),
                _concat([c.value for _, c in procs]).astype(np.uint64),
                n,
                schema,
            )
        )
        return pa.Table.from_pydict(columns, schema=schema)


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, np.int64)


def _last_per_key(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Values at keys 0..n-1 where the last (key, value) given wins, as when each point
    assigned its row's field in turn; and which keys got one."""
    values = np.zeros(n, np.uint64)
    present = np.zeros(n, bool)
    if parts:
        keys = np.concatenate([k for k, _ in parts])[::-1]
        given = np.concatenate([v for _, v in parts])[::-1]
        last_keys, last = np.unique(keys, return_index=True)
        values[last_keys] = given[last]
        present[last_keys] = True
    return values, present


def process_lists(
    rows: np.ndarray, pids: np.ndarray, is_sm: np.ndarray, values: np.ndarray, n: int, schema: pa.Schema
) -> dict[str, pa.Array]:
    """Each of `n` rows' processes, by pid, from their points in order (row, pid, whether
    the point is the SM share rather than memory, value; the last of each wins): pids,
    memory and SM share (0 where a process lacks one)."""
    names = ("proc_pids", "proc_mem_bytes", "proc_sm_pct")
    if not len(rows):
        offsets = pa.array(np.zeros(n + 1, np.int32))
        return {
            name: pa.ListArray.from_arrays(offsets, pa.array([], schema.field(name).type.value_type))
            for name in names
        }
    # Sorted by row, then pid (below 2**32): the order each row lists its processes in.
    unique, slot = np.unique(rows.astype(np.int64) << 32 | pids.astype(np.int64), return_inverse=True)
    unique_rows, unique_pids = unique >> 32, unique & 0xFFFFFFFF
    slot = slot.ravel()
    mem = _last_per_key([(slot[~is_sm], values[~is_sm])], len(unique))[0]
    sm = _last_per_key([(slot[is_sm], values[is_sm])], len(unique))[0]
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(np.bincount(unique_rows, minlength=n), out=offsets[1:])
    arrow_offsets = pa.array(offsets)
    lists = {"proc_pids": unique_pids, "proc_mem_bytes": mem, "proc_sm_pct": sm}
    out = {}
    for name in names:
        kind = schema.field(name).type.value_type
        out[name] = pa.ListArray.from_arrays(
            arrow_offsets, pa.array(lists[name].astype(kind.to_pandas_dtype()), kind)
        )
    return out


def rows_token(gpus: list[tuple[str, str, str]], row_gpu: np.ndarray, row_time: np.ndarray) -> str:
    """A digest of rows' natural keys (cluster, host, GPU id, time in ns), whatever their
    order and however the GPUs are numbered: a retried request gets the same token."""
    used = np.unique(row_gpu).tolist()
    keys = sorted(("\x1f".join(gpus[g]), g) for g in used)
    rank = np.zeros(len(gpus), np.int64)
    rank[[g for _, g in keys]] = np.arange(len(keys))
    ranks = rank[row_gpu]
    times = np.asarray(row_time, np.int64)
    order = np.lexsort((times, ranks))
    digest = hashlib.sha256(b"gpu\n")
    digest.update("\n".join(k for k, _ in keys).encode())
    digest.update(b"\n")
    digest.update(ranks[order].tobytes())
    digest.update(times[order].tobytes())
    return digest.hexdigest()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


@dataclass(slots=True)
class Points:
    """One metric's points read column-wise: `group` numbers the distinct attribute sets."""

    time: np.ndarray  # uint64 ns
    value: np.ndarray  # float64, as the per-point loop reads it (as_int converted)
    is_double: np.ndarray  # bool
    group: np.ndarray  # int64, index into `attrs`
    attrs: list[dict[str, Any]]


def read_points(data: Any, count: int, decoder: AttributeDecoder) -> Points | None:
    """`data` (a Gauge or Sum) as columns, or None where its points are not all in one fixed
    layout: [start time] time, value, then attributes only. The truncations of each
    attribute set are counted once per point that carries it, as the per-point loop does."""
    if count < FAST_MIN_POINTS:
        return None
    raw = data.SerializeToString()  # upb writes fields in number order: points first
    try:
        if raw[0] != _POINT_TAG:
            return None
        length, body = _varint(raw, 1)
    except (IndexError, ValueError):
        return None
    stride = body + length
    if stride * count > len(raw):
        return None
    pos = body
    start_at = -1
    if pos < stride and raw[pos] == _START_TAG:
        start_at, pos = pos, pos + 9
    if pos + 18 > stride or raw[pos] != _TIME_TAG or raw[pos + 9] not in (_DOUBLE_TAG, _INT_TAG):
        return None
    time_at, value_at, attrs_at = pos, pos + 9, pos + 18
    records = np.frombuffer(raw, np.uint8, count=stride * count).reshape(count, stride)
    # Every record has the first one's header (tag and length), so record k starts at k·stride.
    if not (records[:, :body] == records[0, :body]).all():
        return None
    if not (records[:, time_at] == _TIME_TAG).all():
        return None
    if start_at >= 0 and not (records[:, start_at] == _START_TAG).all():
        return None
    tags = records[:, value_at]
    is_double = tags == _DOUBLE_TAG
    if not (is_double | (tags == _INT_TAG)).all():
        return None
    time = np.ascontiguousarray(records[:, time_at + 1 : time_at + 9]).view("<u8").ravel()
    raw_values = np.ascontiguousarray(records[:, value_at + 1 : value_at + 9])
    value = np.where(
        is_double, raw_values.view("<f8").ravel(), raw_values.view("<i8").ravel().astype(np.float64)
    )
    width = stride - attrs_at
    if width:
        group, first, counts = _groups(np.ascontiguousarray(records[:, attrs_at:]))
        blobs = [records[i, attrs_at:].tobytes() for i in first.tolist()]
    else:
        group = np.zeros(count, np.int64)
        blobs, counts = [b""], np.array([count])
    attrs: list[dict[str, Any]] = []
    truncated = decoder.truncated
    for blob, n in zip(blobs, counts.tolist(), strict=True):
        point = NumberDataPoint.FromString(blob)
        if any(fd.name != "attributes" for fd, _ in point.ListFields()):
            decoder.truncated = truncated  # the per-point loop will count them
            return None  # a time or value after the attributes: the last one would count
        before = decoder.truncated
        attrs.append(decoder.decode(point.attributes) if point.attributes else {})
        decoder.truncated += (decoder.truncated - before) * (n - 1)
    return Points(time, value, is_double, group, attrs)


def _groups(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of equal bytes numbered: (group of each row, first row of each group, rows per
    group). Only the byte positions where some row differs from the first tell rows apart;
    where they are few (GPUs of one host differ in a few characters of their ids), they are
    packed into one integer per row, else the rows are compared whole."""
    count, width = regions.shape
    varying = np.flatnonzero((regions != regions[0]).any(axis=0))
    if len(varying) <= 8:
        packed = np.zeros((count, 8), np.uint8)
        packed[:, : len(varying)] = regions[:, varying]
        keys = packed.view("<u8").ravel()
    else:
        keys = regions.view(np.dtype((np.void, width))).ravel()
    _, first, group, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    return group.ravel(), first, counts


def gpu_index(attrs: dict[str, Any]) -> int:
    index = attrs.get("gpu.index", 0)
    return int(index) if type(index) in (int, float) and 0 <= index < 65536 else 0


def valid_pid(pid: Any) -> TypeGuard[int]:
    return not isinstance(pid, bool) and isinstance(pid, int) and 0 <= pid < 2**32


# Why a GPU point is turned away, in the per-point loop's order of checks (a point gets the
# first that applies). The compiled join (api/ingest/_metrics.c) answers the same codes.
NO_UUID, TIME, VALUE, PID, RANGE = 1, 2, 3, 4, 5


def reason_text(
    code: int,
    name: str,
    value: float,
    time_ns: int,
    process: bool,
    low: float,
    high: float,
    time_reason: Callable[[int], str],
) -> str:
    """The per-point loop's words for a turned-away point of metric `name`."""
    if code == NO_UUID:
        return "GPU data point has no gpu.uuid"
    if code == TIME:
        return time_reason(time_ns)
    if code == VALUE:
        return f"{name}: value is missing or not finite"
    if code == PID:
        return f"{name}: process.pid is missing or not a pid"
    if process:
        return f"{name}: value {value:g} is out of range"
    return f"{name}: value {value:g} is outside {low:g}–{high:g}"


@dataclass(frozen=True, slots=True)
class Check:
    """What one metric's points must satisfy, and where they go."""

    name: str
    column: str  # gpu_samples column, or "mem"/"sm" for a process field
    process: bool
    low: float
    high: float
    cluster: str
    host: str
    deployment: str
    latest_ns: int
    oldest_ns: int


def accept(
    points: Points,
    check: Check,
    rows: GpuRows,
    rejected: Counter[str],
    time_reason: Callable[[int], str],
) -> None:
    """Checks in the per-point loop's order (GPU id, time, value, pid, range); rejections are
    counted point by point in point order, so reasons are listed as that loop lists them."""
    attrs = points.attrs
    has_uuid = np.array([bool(a.get("gpu.uuid")) for a in attrs], bool)[points.group]
    time, value = points.time, points.value
    late = (time == 0) | (time > np.uint64(check.latest_ns)) | (time < np.uint64(max(check.oldest_ns, 0)))
    finite = np.isfinite(value)
    with np.errstate(invalid="ignore"):
        in_range = (value >= check.low) & (value <= check.high)
    reason = np.zeros(len(time), np.int8)  # 0 accepted
    reason[~in_range] = RANGE
    if check.process:
        pid_ok = np.array([valid_pid(a.get("process.pid")) for a in attrs], bool)[points.group]
        reason[~pid_ok] = PID
    reason[~finite] = VALUE
    reason[late] = TIME
    reason[~has_uuid] = NO_UUID
    for i in np.flatnonzero(reason).tolist():
        rejected[
            reason_text(
                int(reason[i]),
                check.name,
                float(value[i]),
                int(time[i]),
                check.process,
                check.low,
                check.high,
                time_reason,
            )
        ] += 1
    ok = np.flatnonzero(reason == 0)
    if not len(ok):
        return
    group = points.group[ok]
    used = np.unique(group).tolist()
    gpu_of = np.zeros(len(attrs), np.int64)
    index_of = np.zeros(len(attrs), np.int64)
    name_of = np.zeros(len(attrs), np.int64)
    pid_of = np.zeros(len(attrs), np.int64)
    for g in used:
        a = attrs[g]
        gpu_of[g] = rows.gpu_id(check.cluster, check.host, str(a["gpu.uuid"]))
        index_of[g] = gpu_index(a)
        name_of[g] = rows.label_id(str(a.get("gpu.name", "")))
        if check.process:
            pid_of[g] = a["process.pid"]
    kept = value[ok]
    stored = np.trunc(kept) if check.process else np.round(kept)
    rows.add(
        Chunk(
            column=check.column,
            process=check.process,
            gpu=gpu_of[group],
            time=time[ok].astype(np.int64),
            value=stored.astype(np.uint64),
            index=index_of[group],
            name=name_of[group],
            deployment=rows.label_id(check.deployment),
            pid=pid_of[group] if check.process else np.zeros(0, np.int64),
        )
    )
