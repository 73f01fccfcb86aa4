"""Hand-rolled Protocol Buffers encoding of GPU samples as an OTLP ExportMetricsServiceRequest.

This is the collector's hottest path (every GPU, every field, every second). Building
~150 data points a tick as protobuf objects cost ~2.5 ms for 8 GPUs; writing the wire format
directly, with each GPU's attributes encoded once, costs a tenth of that. The shape is fixed
(gauges and one cumulative sum of NumberDataPoints), so the encoder stays small; tests parse
its output with the official OTLP classes and compare it field by field.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_Q = struct.Struct("<Q")  # fixed64
_q = struct.Struct("<q")  # sfixed64
_d = struct.Struct("<d")  # double

# One-byte tags: (field number << 3) | wire type (0 varint, 1 64-bit, 2 length-delimited).
_ATTR = b"\x3a"  # NumberDataPoint.attributes = 7, LEN
_START = b"\x11"  # NumberDataPoint.start_time_unix_nano = 2, fixed64
_TIME = b"\x19"  # NumberDataPoint.time_unix_nano = 3, fixed64
_AS_DOUBLE = b"\x21"  # NumberDataPoint.as_double = 4, double
_AS_INT = b"\x31"  # NumberDataPoint.as_int = 6, sfixed64
_POINT = b"\x0a"  # Gauge.data_points / Sum.data_points = 1, LEN
_CUMULATIVE_MONOTONIC = b"\x10\x02\x18\x01"  # Sum.aggregation_temporality = 2 (CUMULATIVE); is_monotonic = 1
_NAME, _UNIT, _GAUGE, _SUM = b"\x0a", b"\x1a", b"\x2a", b"\x3a"  # Metric fields 1, 3, 5, 7
_FIRST, _SECOND = b"\x0a", b"\x12"  # fields 1 and 2, LEN (resource/scope, scope_metrics/metrics)


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 -> two's complement, as protobuf does
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + varint(len(payload)) + payload


@lru_cache(maxsize=1024)
def gpu_attributes(uuid: str, index: int, name: str) -> bytes:
    """The encoded ``attributes`` of a GPU's data points (computed once per GPU)."""
    kvs = (
        KeyValue(key="gpu.uuid", value=AnyValue(string_value=uuid)),
        KeyValue(key="gpu.index", value=AnyValue(int_value=index)),
        KeyValue(key="gpu.name", value=AnyValue(string_value=name)),
    )
    return b"".join(field(_ATTR, kv.SerializeToString()) for kv in kvs)


def pid_attribute(pid: int) -> bytes:
    # KeyValue{key: "process.pid", value: AnyValue{int_value: pid}}
    return field(_ATTR, field(b"\x0a", b"process.pid") + field(b"\x12", b"\x18" + varint(pid)))


def int_point(attrs: bytes, time_ns: int, value: int) -> bytes:
    return field(_POINT, attrs + _TIME + _Q.pack(time_ns) + _AS_INT + _q.pack(value))


def double_point(attrs: bytes, time_ns: int, value: float) -> bytes:
    return field(_POINT, attrs + _TIME + _Q.pack(time_ns) + _AS_DOUBLE + _d.pack(value))


def metric(name: str, unit: str, points: list[bytes], cumulative_sum: bool = False) -> bytes:
    """An encoded Metric holding ``points`` (encoded by ``int_point``/``double_point``)."""
    head = field(_NAME, name.encode()) + field(_UNIT, unit.encode())
    if cumulative_sum:
        return head + field(_SUM, b"".join(points) + _CUMULATIVE_MONOTONIC)
    return head + field(_GAUGE, b"".join(points))


def request(resource: bytes, scope: bytes, metrics: list[bytes]) -> bytes:
    """ExportMetricsServiceRequest{resource_metrics: [{resource, scope_metrics: [{scope, metrics}]}]}."""
    scope_metrics = field(_FIRST, scope) + b"".join(field(_SECOND, m) for m in metrics)
    return field(_FIRST, field(_FIRST, resource) + field(_SECOND, scope_metrics))
