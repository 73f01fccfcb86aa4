"""Protocol Buffers wire encoding of OTLP metric requests, many data points at a time.

A simulated week is millions of metric data points. Built as protobuf objects they would
take the demo longer to make than the server to ingest; but a NumberDataPoint whose
attributes are fixed (one GPU, one replica) and whose time and value are 64-bit fields is
a fixed-size record, so a whole series is one numpy structured array turned into bytes.
The outer messages are a few length-prefixed fields. tests/demo parse the output with the
official OTLP classes.

Field numbers are those of opentelemetry-proto (metrics/v1, common/v1, resource/v1).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

_LEN, _I64, _VARINT = 2, 1, 0

# NumberDataPoint
_P_ATTRIBUTES, _P_START, _P_TIME, _P_DOUBLE, _P_INT = 7, 2, 3, 4, 6
# Gauge / Sum
_DATA_POINTS, _SUM_TEMPORALITY, _SUM_MONOTONIC = 1, 2, 3
_CUMULATIVE = 2
# Metric
_M_NAME, _M_UNIT, _M_GAUGE, _M_SUM = 1, 3, 5, 7
# ResourceMetrics / ScopeMetrics / ExportMetricsServiceRequest
_RM_RESOURCE, _RM_SCOPE_METRICS, _SM_SCOPE, _SM_METRICS, _REQ_RESOURCE_METRICS = 1, 2, 1, 2, 1
# Resource / InstrumentationScope / KeyValue / AnyValue / ArrayValue
_RES_ATTRIBUTES, _SCOPE_NAME, _SCOPE_VERSION, _KV_KEY, _KV_VALUE = 1, 1, 2, 1, 2
_V_STRING, _V_BOOL, _V_INT, _V_DOUBLE, _V_ARRAY, _ARRAY_VALUES = 1, 2, 3, 4, 5, 1


def varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 as two's complement, ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def length_delimited(field: int, payload: bytes) -> bytes:
    return tag(field, _LEN) + varint(len(payload)) + payload


def any_value(value: Any) -> bytes:
    """An AnyValue message: str, bool, int, float, or a list of those."""
    if isinstance(value, str):
        return length_delimited(_V_STRING, value.encode())
    if isinstance(value, bool):
        return tag(_V_BOOL, _VARINT) + varint(int(value))
    if isinstance(value, int):
        return tag(_V_INT, _VARINT) + varint(value)
    if isinstance(value, float):
        return tag(_V_DOUBLE, _I64) + struct.pack("<d", value)
    if isinstance(value, list | tuple):
        items = b"".join(length_delimited(_ARRAY_VALUES, any_value(v)) for v in value)
        return length_delimited(_V_ARRAY, items)
    raise TypeError(f"cannot encode {type(value).__name__} as an OTLP attribute value")


def key_values(field: int, attrs: Mapping[str, Any]) -> bytes:
    """`attrs` as repeated KeyValue entries of field `field`."""
    return b"".join(
        length_delimited(
            field, length_delimited(_KV_KEY, k.encode()) + length_delimited(_KV_VALUE, any_value(v))
        )
        for k, v in attrs.items()
    )


def number_points(
    attrs: Mapping[str, Any],
    times_ns: npt.NDArray[np.int64],
    values: npt.NDArray[Any],
    *,
    start_ns: int | None = None,
) -> bytes:
    """Repeated `data_points` (field 1 of Gauge and Sum): one NumberDataPoint per time.

    Integer `values` become `as_int`, floating ones `as_double`. Every point carries
    `attrs`, and `start_ns` when given (cumulative sums)."""
    n = len(times_ns)
    if len(values) != n:
        raise ValueError("times and values differ in length")
    if n == 0:
        return b""
    is_int = np.issubdtype(values.dtype, np.integer)
    body = key_values(_P_ATTRIBUTES, attrs)
    if start_ns is not None:
        body += tag(_P_START, _I64) + struct.pack("<Q", start_ns)
    point_len = len(body) + 2 * 9  # + time and value: a one-byte tag and eight bytes each
    head = tag(_DATA_POINTS, _LEN) + varint(point_len) + body + tag(_P_TIME, _I64)
    record = np.dtype(
        [("head", f"S{len(head)}"), ("time", "<u8"), ("vtag", "u1"), ("value", "<i8" if is_int else "<f8")]
    )
    out = np.empty(n, dtype=record)
    out["head"] = head
    out["time"] = times_ns
    out["vtag"] = (_P_INT if is_int else _P_DOUBLE) << 3 | _I64
    out["value"] = values
    return out.tobytes()


def gauge(name: str, unit: str, points: bytes) -> bytes:
    """A Metric holding a Gauge of the given encoded points."""
    return _metric(name, unit) + length_delimited(_M_GAUGE, points)


def cumulative_sum(name: str, unit: str, points: bytes) -> bytes:
    """A Metric holding a monotonic, cumulative Sum of the given encoded points."""
    flags = tag(_SUM_TEMPORALITY, _VARINT) + varint(_CUMULATIVE) + tag(_SUM_MONOTONIC, _VARINT) + varint(1)
    return _metric(name, unit) + length_delimited(_M_SUM, points + flags)


def _metric(name: str, unit: str) -> bytes:
    return length_delimited(_M_NAME, name.encode()) + length_delimited(_M_UNIT, unit.encode())


def resource_metrics(resource: Mapping[str, Any], scope: tuple[str, str], metrics: Iterable[bytes]) -> bytes:
    """One ResourceMetrics message: the resource, one scope, its metrics."""
    scope_msg = length_delimited(_SCOPE_NAME, scope[0].encode()) + length_delimited(
        _SCOPE_VERSION, scope[1].encode()
    )
    scope_metrics = length_delimited(_SM_SCOPE, scope_msg) + b"".join(
        length_delimited(_SM_METRICS, m) for m in metrics
    )
    return length_delimited(_RM_RESOURCE, key_values(_RES_ATTRIBUTES, resource)) + length_delimited(
        _RM_SCOPE_METRICS, scope_metrics
    )


def metrics_request(resources: Iterable[bytes]) -> bytes:
    """A serialized ExportMetricsServiceRequest of encoded ResourceMetrics messages."""
    return b"".join(length_delimited(_REQ_RESOURCE_METRICS, r) for r in resources)


# --- traces ------------------------------------------------------------------------------------

# Span
_S_TRACE_ID, _S_SPAN_ID, _S_NAME, _S_KIND, _S_START, _S_END, _S_ATTRIBUTES = 1, 2, 5, 6, 7, 8, 9
_SPAN_KIND_SERVER = 2
# ScopeSpans / ResourceSpans / ExportTraceServiceRequest
_SS_SCOPE, _SS_SPANS, _RS_RESOURCE, _RS_SCOPE_SPANS, _REQ_RESOURCE_SPANS = 1, 2, 1, 2, 1


@dataclass(slots=True)
class SpanColumns:
    """Root SERVER spans, column by column (every array one entry per span)."""

    ids: bytes
    """24 bytes per span: the trace id (16) then the span id (8)."""
    start_ns: npt.NDArray[np.int64]
    end_ns: npt.NDArray[np.int64]
    names: Sequence[str]
    doubles: Mapping[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    ints: Mapping[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    strings: Mapping[str, Sequence[str]] = field(default_factory=dict)
    constant: Mapping[str, Any] = field(default_factory=dict)
    """Attributes every span carries with the same value."""


def encode_spans(columns: SpanColumns) -> list[bytes]:
    """Each span as an encoded `spans` entry of a ScopeSpans message.

    The fixed-size part of every span (ids, times, kind, floating-point attributes) is laid
    out as one numpy record per span; only names, integers and strings are joined per span."""
    n = len(columns.start_ns)
    if len(columns.ids) != 24 * n:
        raise ValueError("ids must hold 24 bytes per span")
    if n == 0:
        return []
    heads = [_attribute_head(key, 9) + tag(_V_DOUBLE, _I64) for key in columns.doubles]
    dtype: list[tuple[str, str]] = [
        ("h_tid", "S2"),
        ("tid", "V16"),
        ("h_sid", "S2"),
        ("sid", "V8"),
        ("h_kind", "S2"),
        ("h_start", "S1"),
        ("start", "<u8"),
        ("h_end", "S1"),
        ("end", "<u8"),
    ]
    for i, head in enumerate(heads):
        dtype += [(f"h{i}", f"S{len(head)}"), (f"v{i}", "<f8")]
    records = np.empty(n, dtype=np.dtype(dtype))
    ids = np.frombuffer(columns.ids, dtype=np.uint8).reshape(n, 24)
    records["h_tid"] = tag(_S_TRACE_ID, _LEN) + varint(16)
    records["tid"] = np.ascontiguousarray(ids[:, :16]).view("V16").ravel()
    records["h_sid"] = tag(_S_SPAN_ID, _LEN) + varint(8)
    records["sid"] = np.ascontiguousarray(ids[:, 16:]).view("V8").ravel()
    records["h_kind"] = tag(_S_KIND, _VARINT) + varint(_SPAN_KIND_SERVER)
    records["h_start"] = tag(_S_START, _I64)
    records["start"] = columns.start_ns
    records["h_end"] = tag(_S_END, _I64)
    records["end"] = columns.end_ns
    for i, (head, values) in enumerate(zip(heads, columns.doubles.values(), strict=True)):
        records[f"h{i}"] = head
        records[f"v{i}"] = values
    blob = records.tobytes()
    size = records.dtype.itemsize
    constant = key_values(_S_ATTRIBUTES, columns.constant)
    ints = [(key, values.tolist()) for key, values in columns.ints.items()]
    strings = list(columns.strings.items())
    names = columns.names
    span_tag = tag(_SS_SPANS, _LEN)
    out = []
    for i in range(n):
        parts = [blob[i * size : (i + 1) * size], _name(names[i])]
        parts += [_int_attribute(key, values[i]) for key, values in ints]
        parts += [_string_attribute(key, values[i]) for key, values in strings]
        parts.append(constant)
        body = b"".join(parts)
        out.append(span_tag + _length(len(body)) + body)
    return out


def traces_request(resource: Mapping[str, Any], scope: tuple[str, str], spans: Iterable[bytes]) -> bytes:
    """A serialized ExportTraceServiceRequest: one resource, one scope, the encoded spans."""
    scope_msg = length_delimited(_SCOPE_NAME, scope[0].encode())
    if scope[1]:
        scope_msg += length_delimited(_SCOPE_VERSION, scope[1].encode())
    scope_spans = length_delimited(_SS_SCOPE, scope_msg) + b"".join(spans)
    resource_spans = length_delimited(_RS_RESOURCE, key_values(_RES_ATTRIBUTES, resource)) + length_delimited(
        _RS_SCOPE_SPANS, scope_spans
    )
    return length_delimited(_REQ_RESOURCE_SPANS, resource_spans)


@lru_cache(maxsize=1024)
def _attribute_head(key: str, value_len: int) -> bytes:
    """A span attribute entry up to its AnyValue's contents, for an AnyValue of `value_len` bytes."""
    key_field = length_delimited(_KV_KEY, key.encode())
    kv_len = len(key_field) + 1 + len(varint(value_len)) + value_len
    return tag(_S_ATTRIBUTES, _LEN) + varint(kv_len) + key_field + tag(_KV_VALUE, _LEN) + varint(value_len)


@lru_cache(maxsize=1 << 17)
def _int_attribute(key: str, value: int) -> bytes:
    payload = tag(_V_INT, _VARINT) + varint(value)
    return _attribute_head(key, len(payload)) + payload


def _string_attribute(key: str, value: str) -> bytes:
    data = value.encode()
    return _string_head(key, len(data)) + data


@lru_cache(maxsize=1024)
def _string_head(key: str, size: int) -> bytes:
    """A string attribute up to its text, for a text of `size` bytes."""
    value_head = tag(_V_STRING, _LEN) + varint(size)
    return _attribute_head(key, len(value_head) + size) + value_head


@lru_cache(maxsize=1 << 14)
def _length(size: int) -> bytes:
    return varint(size)


@lru_cache(maxsize=64)
def _name(name: str) -> bytes:
    return length_delimited(_S_NAME, name.encode())
