"""The compiled metrics reader (api/ingest/_metrics.c, driven by api/ingest/gpu_wire.py) and
the Python path give the same batch.

The server hands protobuf metrics bodies to `read_metrics`, which lets the compiled reader
read and join every GPU point; anything it does not read as upb would, it hands back, and
upb parses the body for the Python path. Either way the GPU rows (and their order, which
the rollups' anyLast reads), the engine rows, the rejections with their reasons in order,
the counts and the dedup token must be what the Python path gives: for every request the
GPU and metrics fuzzers draw, for encodings a serializer never writes, and for damaged
bytes, which must be refused exactly when upb refuses them.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from api.errors import BadRequest
from api.ingest import gpu_wire
from api.ingest.body import Encoding
from api.ingest.metrics import FIELD_CODES, MetricBatch, normalise_metrics, read_metrics
from tests.ingest import test_gpu_fast_path as gpu_fuzz
from tests.ingest import test_metric_properties as metrics_fuzz
from tests.otlp import NS, attributes
from tests.otlp import wire_field as _field
from tests.otlp import wire_varint as _varint

NOW = gpu_fuzz.NOW
OLDEST = gpu_fuzz.OLDEST


def compiled(
    wire_bytes: bytes,
    max_bytes: int = 64,
    now: int = NOW,
    oldest: int = OLDEST,
    known: gpu_wire.Known | None = None,
) -> MetricBatch:
    return read_metrics(
        wire_bytes,
        Encoding.PROTOBUF,
        max_items=100_000,
        max_attribute_bytes=max_bytes,
        now_ns=now,
        oldest_ns=oldest,
        known=known,
    )


def python(wire_bytes: bytes, max_bytes: int = 64, now: int = NOW, oldest: int = OLDEST) -> MetricBatch:
    request = ExportMetricsServiceRequest.FromString(wire_bytes)
    return normalise_metrics(request, max_attribute_bytes=max_bytes, now_ns=now, oldest_ns=oldest)


def assert_same(want: MetricBatch, got: MetricBatch) -> None:
    assert got.gpu_table().to_pylist() == want.gpu_table().to_pylist()
    assert len(got.gpu_rows) == len(want.gpu_rows)
    if len(want.gpu_rows):
        assert got.gpu_token() == want.gpu_token()
    assert got.engine_rows == want.engine_rows
    assert list(got.rejected.items()) == list(want.rejected.items())
    assert (got.received, got.ignored, got.truncated_attributes) == (
        want.received,
        want.ignored,
        want.truncated_attributes,
    )


def scanned(wire_bytes: bytes) -> gpu_wire.Scan | None:
    return gpu_wire.scan(wire_bytes, FIELD_CODES)


def test_the_compiled_reader_was_built() -> None:
    # `pip install -e .` compiles it next to _otlp (optional there, so an install without a C
    # compiler still works). CI has gcc: a missing reader there is a broken build.
    assert gpu_wire.WIRE_METRICS, "api/ingest/_metrics.c was not compiled: run `pip install -e .` with gcc"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gpu_fuzz.requests(), st.sampled_from([8, 64]))
def test_gpu_requests_read_in_c_give_the_reference_rows_reasons_and_counts(
    body: bytes, max_bytes: int
) -> None:
    assert scanned(body) is not None  # every layout the fuzzer writes is read in C
    got = compiled(body, max_bytes)
    rows = got.gpu_table().to_pylist()
    for row in rows:
        row["time"] = round(row["time"].timestamp() * 1000)
    want_rows, want_rejected, want_truncated = gpu_fuzz.reference(
        ExportMetricsServiceRequest.FromString(body), max_bytes
    )
    assert rows == want_rows
    assert list(got.rejected.items()) == list(want_rejected.items())
    assert got.truncated_attributes == want_truncated
    assert_same(python(body, max_bytes), got)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metrics_fuzz.requests(), st.sampled_from([0, OLDEST]))
def test_any_metrics_request_reads_the_same_both_ways(
    request: ExportMetricsServiceRequest, oldest: int
) -> None:
    """Engine metrics, histograms, summaries and GPU fields with odd attributes, mixed."""
    body = request.SerializeToString()
    assert_same(python(body, oldest=oldest), compiled(body, oldest=oldest))


KNOWN = gpu_wire.Known(limit=6)  # shared by every example below, and small: it starts afresh often


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(gpu_fuzz.requests(), min_size=1, max_size=3), st.sampled_from([8, 64]))
def test_sets_decoded_for_earlier_requests_give_what_decoding_them_afresh_gives(
    bodies: list[bytes], max_bytes: int
) -> None:
    """The service keeps one `Known` for all requests: a set decoded before (under either
    attribute limit) must give the same attributes and the same truncation counts."""
    for body in bodies:
        assert_same(compiled(body, max_bytes), compiled(body, max_bytes, known=KNOWN))


def test_a_collector_minute_is_read_in_c_and_matches_the_reference() -> None:
    from bench.ingest import make_gpu_requests

    body = make_gpu_requests(1, seed=11)[0]
    found = scanned(body)
    assert found is not None and len(found.sets) == 16  # 8 GPUs, and each with its process
    now = int(found.time.max())
    got = compiled(body, 8192, now, 0)
    assert len(got.gpu_rows) == 480 and not got.rejected
    rows = got.gpu_table().to_pylist()
    for row in rows:
        row["time"] = round(row["time"].timestamp() * 1000)
    want, _, _ = gpu_fuzz.reference(ExportMetricsServiceRequest.FromString(body), 8192, now, 0)
    assert rows == want


# --- encodings a serializer never writes --------------------------------------------------------

GPU = attributes({"gpu.uuid": "GPU-1", "gpu.index": 0, "gpu.name": "H100"})
ATTRS = b"".join(_field(7, kv.SerializeToString()) for kv in GPU)
TIME = NOW - 60 * NS


def _fixed(field: int, value: int) -> bytes:
    return _varint(field << 3 | 1) + value.to_bytes(8, "little", signed=value < 0)


def _double(field: int, value: float) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<d", value)


def _request(metric: bytes, resource: bytes | None = None) -> bytes:
    res = _field(1, resource) if resource is not None else b""
    return _field(1, res + _field(2, _field(2, metric)))


def _gauge(name: str, *points: bytes) -> bytes:
    return _field(1, name.encode()) + _field(5, b"".join(_field(1, p) for p in points))


def test_unusual_but_plain_encodings_are_read_in_c_as_protobuf_reads_them() -> None:
    cases = {
        "time twice (the last wins)": ATTRS + _fixed(3, 1) + _fixed(3, TIME) + _fixed(6, 40),
        "as_int, then as_double (the oneof keeps the last)": ATTRS + _fixed(3, TIME) + _fixed(6, 40)
        + _double(4, 41.5),
        "fields before the attributes": _fixed(3, TIME) + _fixed(4, 0) + ATTRS,
        "flags, a start time and an unknown field": _fixed(2, TIME - NS) + ATTRS + _fixed(3, TIME)
        + _double(4, 30.0) + _varint(8 << 3) + _varint(1) + _field(99, b"later"),
        "no value": ATTRS + _fixed(3, TIME),
        "no attributes": _fixed(3, TIME) + _double(4, 1.0),
        "an exemplar": ATTRS + _fixed(3, TIME) + _double(4, 2.0)
        + _field(5, metrics_pb2.Exemplar(as_double=1.0, span_id=b"\x01" * 8).SerializeToString()),
    }  # fmt: skip
    for label, point in cases.items():
        body = _request(_gauge("gpu.utilization", point, point))
        assert scanned(body) is not None, label
        assert_same(python(body), compiled(body))


def test_encodings_upb_reads_differently_are_left_to_it() -> None:
    point = ATTRS + _fixed(3, TIME) + _double(4, 50.0)
    resource = attributes({"host.name": "n1"})
    resource_bytes = b"".join(_field(1, kv.SerializeToString()) for kv in resource)
    cases = {
        "attributes split by another field": _request(
            _gauge("gpu.utilization", _field(7, GPU[0].SerializeToString()) + _fixed(3, TIME)
                   + _field(7, GPU[1].SerializeToString()) + _double(4, 1.0))
        ),
        "the resource twice (upb merges them)": _field(
            1,
            _field(1, resource_bytes) + _field(1, resource_bytes)
            + _field(2, _field(2, _gauge("gpu.utilization", point))),
        ),
        "the gauge twice (upb merges them)": _request(
            _field(1, b"gpu.utilization") + _field(5, _field(1, point)) + _field(5, _field(1, point))
        ),
        "time with the wrong wire type": _request(
            _gauge("gpu.utilization", ATTRS + _varint(3 << 3) + _varint(5))
        ),
        "a group as an unknown field": _request(
            _gauge("gpu.utilization", point + _varint(99 << 3 | 3) + _varint(99 << 3 | 4))
        ),
    }  # fmt: skip
    for label, body in cases.items():
        ExportMetricsServiceRequest.FromString(body)  # legal protobuf, every one
        assert scanned(body) is None, label
        assert_same(python(body), compiled(body))


def test_over_the_limit_the_request_is_refused_as_the_python_path_refuses_it() -> None:
    point = ATTRS + _fixed(3, TIME) + _double(4, 50.0)
    body = _request(_gauge("gpu.utilization", *[point] * 5))
    with pytest.raises(BadRequest, match="holds 5 data points; the limit is 4"):
        read_metrics(body, Encoding.PROTOBUF, max_items=4, max_attribute_bytes=64, now_ns=NOW, oldest_ns=0)


# --- damaged bytes ---------------------------------------------------------------------------


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except BadRequest:
        return "refused"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(gpu_fuzz.requests(), metrics_fuzz.requests().map(lambda r: r.SerializeToString())),
    st.lists(st.tuples(st.integers(0, 2**16), st.binary(max_size=8)), min_size=1, max_size=6),
)
def test_damaged_bytes_are_refused_exactly_when_upb_refuses_them(body: bytes, edits: list[Any]) -> None:
    damaged = bytearray(body)
    for at, patch in edits:
        at %= len(damaged) + 1
        damaged[at : at + len(patch)] = patch  # overwrite, truncate or extend
    data = bytes(damaged)
    got = _outcome(lambda: compiled(data))
    try:
        want = python(data)
    except Exception:  # upb refuses it: the server answers 400
        assert got == "refused"
        return
    assert got != "refused"
    assert_same(want, got)
