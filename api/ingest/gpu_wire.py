"""GPU points read and joined in C (`api/ingest/_metrics.c`): the fast path of GPU ingest.

`scan` reads a protobuf request's envelope and every point of its GPU metrics into
columns, numbering the distinct attribute sets (a host's GPUs, and their processes);
Python decodes each set once and says what it means (which GPU, which pid); `join` checks
every point as the per-point loop in `api.ingest.metrics` does and joins the accepted ones
into one row per GPU and instant (`WireRows`), whose Arrow batch C builds as well and
pyarrow imports through the Arrow C data interface.

Without the compiled module (no C compiler where it was installed) `scan` answers None
and the request takes the Python path, which gives the same rows, reasons and counts:
tests/ingest/test_gpu_wire.py holds the two to that.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceMessage

from api.ingest.gpu_points import rows_token
from api.ingest.spans import AttributeDecoder, Resource, resource_of

_metrics: ModuleType | None
try:  # built by `pip install` next to _otlp (pyproject.toml)
    from api.ingest import _metrics
except ImportError:
    _metrics = None

WIRE_METRICS = _metrics is not None
"""Whether protobuf metrics requests are read by the compiled decoder (CI insists on it)."""


@dataclass(frozen=True, slots=True)
class Scan:
    """A request as `_metrics.scan_metrics` read it."""

    resources: list[bytes]
    """Each ResourceMetrics' Resource, encoded (b"" where it has none)."""
    items: list[tuple[Any, ...]]
    """Every metric in order: (resource, name, first point, end) for a GPU field's gauge or
    sum, its points read; (resource, Metric bytes) for anything else."""
    sets: list[bytes]
    """Each distinct attribute set: NumberDataPoint.attributes fields, encoded."""
    set_resource: np.ndarray
    time: np.ndarray  # uint64 ns, per point
    value: np.ndarray  # float64 (as_int converted), per point
    kind: bytes  # per point: 0 no value, 1 as_double, 2 as_int
    field: bytes  # per point: the field's code (its index in the names given)
    set_of_point: np.ndarray  # int32
    points: int
    """Data points of every metric, for the request's limit."""


def scan(data: bytes, names: dict[str, int]) -> Scan | None:
    """The request's GPU points as columns, or None: no compiled module, or bytes it leaves
    to upb (malformed, or legal but unusual)."""
    if _metrics is None:
        return None
    read = _metrics.scan_metrics(data, names)
    if read is None:
        return None
    resources, items, sets, set_resource, time, value, kind, field, group, points = read
    return Scan(
        resources,
        items,
        sets,
        np.frombuffer(set_resource, np.int32),
        np.frombuffer(time, np.uint64),
        np.frombuffer(value, np.float64),
        kind,
        field,
        np.frombuffer(group, np.int32),
        points,
    )


class Known:
    """Attribute sets and resources already decoded, by their bytes. A collector sends its
    host's GPUs with the same attributes in every request, so nearly every set a request
    holds was decoded for an earlier one. Bounded: past `limit` entries it starts afresh.
    The values are shared between requests: never mutate them. One per ingest service."""

    __slots__ = ("_limit", "_resources", "_sets")

    def __init__(self, limit: int = 8192) -> None:
        self._limit = limit
        self._sets: dict[tuple[int, bytes], tuple[dict[str, Any], int]] = {}
        self._resources: dict[tuple[int, bytes], tuple[Resource, int]] = {}

    def attributes(self, blob: bytes, decoder: AttributeDecoder) -> tuple[dict[str, Any], int]:
        """The set's attributes, and how many values decoding it cuts short (not yet
        counted: it is counted once per point that carries the set). Raises DecodeError
        for bytes upb refuses."""
        key = (decoder.max_bytes, blob)
        found = self._sets.get(key)
        if found is None:
            kvs = NumberDataPoint.FromString(blob).attributes
            found = decoder.decode_apart(kvs) if kvs else ({}, 0)
            self._keep(self._sets, key, found)
        return found

    def resource(self, blob: bytes, decoder: AttributeDecoder) -> Resource:
        """The resource these bytes encode (its cut-short values counted on `decoder`)."""
        key = (decoder.max_bytes, blob)
        found = self._resources.get(key)
        if found is None:
            attrs, cut = decoder.decode_apart(ResourceMessage.FromString(blob).attributes)
            found = resource_of(attrs), cut
            self._keep(self._resources, key, found)
        decoder.truncated += found[1]
        return found[0]

    def _keep(self, table: dict[tuple[int, bytes], Any], key: tuple[int, bytes], value: Any) -> None:
        if len(table) >= self._limit:
            table.clear()
        table[key] = value


@dataclass(frozen=True, slots=True)
class SetFacts:
    """What each attribute set says, per set: GPU id (-1: no gpu.uuid), pid (-1: none or
    not a pid), and for a row it starts, gpu.index and the label ids of gpu.name and the
    resource's deployment."""

    gpu: np.ndarray  # int32
    pid: np.ndarray  # int64 (these two go to C as they are)
    index: np.ndarray  # int64
    name: np.ndarray  # int64
    deployment: np.ndarray  # int64


@dataclass(frozen=True, slots=True)
class Joined:
    reasons: np.ndarray
    """Per point: 0 accepted, else why not (`api.ingest.gpu_points.NO_UUID` … `RANGE`)."""
    rejected: int
    rows: WireRows


def join(
    found: Scan,
    facts: SetFacts,
    gpus: list[tuple[str, str, str]],
    labels: list[str],
    bounds: list[tuple[int, float, float]],
    widths: tuple[int, ...],
    latest_ns: int,
    oldest_ns: int,
) -> Joined:
    """`bounds`, per field code: (gpu_samples column 0..12, or -1 a process's memory, -2
    its SM share; lowest and highest value allowed). `widths`: each column's bytes."""
    assert _metrics is not None  # a Scan comes only from the compiled module
    reasons, rejected, n, row_ns, row_gpu, row_set, columns, procs = _metrics.join_points(
        found.time,
        found.value,
        found.kind,
        found.field,
        found.set_of_point,
        facts.gpu,
        facts.pid,
        bounds,
        widths,
        max(latest_ns, 0),
        max(oldest_ns, 0),
    )
    rows = WireRows(
        gpus,
        labels,
        n,
        np.frombuffer(row_ns, np.int64),  # whole ns below 2**63 (checked against latest_ns)
        np.frombuffer(row_gpu, np.int32),
        np.frombuffer(row_set, np.int32),
        facts,
        columns,
        widths,
        procs,
    )
    return Joined(np.frombuffer(reasons, np.uint8), rejected, rows)


@dataclass(frozen=True, slots=True)
class WireRows:
    """The rows `join` made: `len`, `table(schema)` and `token()`, like `GpuRows`."""

    gpus: list[tuple[str, str, str]]
    """(cluster, host, uuid) of each GPU id."""
    labels: list[str]
    """The text of each label id (gpu.name and deployment values)."""
    n: int
    time: np.ndarray  # int64 ns, per row
    row_gpu: np.ndarray  # int32 GPU id, per row
    row_set: np.ndarray  # int32, per row: the attribute set of the point that started it
    facts: SetFacts
    columns: list[tuple[bytes, bytes, int]]
    """Per gpu_samples column 0..12: values, validity bitmap, null count."""
    widths: tuple[int, ...]
    """Each of those columns' width in bytes."""
    procs: tuple[bytes, bytes, bytes, bytes]
    """The process lists: offsets, pids, memory, SM share."""

    def __len__(self) -> int:
        return self.n

    def token(self) -> str:
        return rows_token(self.gpus, self.row_gpu, self.time)

    def table(self, schema: pa.Schema) -> pa.Table:
        """The rows as Arrow, built in C and imported through the C data interface: one call,
        where building the columns here cost ≈ 40 pyarrow objects a request."""
        assert _metrics is not None  # WireRows come only from the compiled module
        address = _metrics.arrow_batch(
            self.n,
            self.time,
            self.row_gpu,
            self.row_set,
            [text for gpu in self.gpus for text in gpu],
            self.labels,
            self.facts.index,
            self.facts.name,
            self.facts.deployment,
            self.columns,
            self.widths,
            self.procs,
        )
        return pa.Table.from_batches([pa.RecordBatch._import_from_c(address, schema)])
