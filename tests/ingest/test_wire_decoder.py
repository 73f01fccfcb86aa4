"""The compiled wire decoder (api/ingest/_otlp.c) and the Python path give the same batch.

The decoder reads protobuf requests straight from their bytes; anything unusual it hands
back (None) and the Python path, walking the parsed message, decides. Either way the rows,
rejections, ignored spans and truncation counts must be exactly what the Python path gives:
for every request the span fuzzer draws, and for hand-made encodings a serializer never
writes (fields twice, oneof members twice, groups, deep nesting).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from api.ingest import traces
from api.ingest.spans import Span
from api.ingest.traces import TraceBatch, normalise_traces
from tests.fuzz.test_span_properties import MAX_ATTRIBUTE_BYTES, NOW_NS, RETENTION_NS, requests
from tests.otlp import NS, span, traces_request, vllm_span
from tests.otlp import wire_field as _field
from tests.otlp import wire_varint as _varint

START = NOW_NS - 3600 * NS


def both(wire: bytes, max_attribute_bytes: int = MAX_ATTRIBUTE_BYTES) -> tuple[TraceBatch, TraceBatch]:
    request = ExportTraceServiceRequest.FromString(wire)  # upb first, as the server does
    kwargs: dict[str, Any] = {
        "max_attribute_bytes": max_attribute_bytes,
        "now_ns": NOW_NS,
        "oldest_ns": NOW_NS - RETENTION_NS,
    }
    return normalise_traces(request, **kwargs), normalise_traces(request, wire=wire, **kwargs)


def assert_same(python: TraceBatch, compiled: TraceBatch) -> None:
    assert compiled.rows == python.rows
    assert compiled.rejected == python.rejected
    assert (compiled.ignored, compiled.received, compiled.truncated_attributes) == (
        python.ignored,
        python.received,
        python.truncated_attributes,
    )


def decoded(wire: bytes, max_attribute_bytes: int = MAX_ATTRIBUTE_BYTES) -> Any:
    assert traces._otlp is not None
    return traces._otlp.decode_traces(wire, max_attribute_bytes, Span)


def test_the_compiled_decoder_was_built() -> None:
    # `pip install -e .` compiles it (pyproject: ext-modules, optional so an install without a
    # C compiler still works). CI has gcc: a missing decoder there is a broken build.
    assert traces.WIRE_DECODER, "api/ingest/_otlp.c was not compiled: run `pip install -e .` with gcc"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_any_request_the_fuzzer_draws_decodes_the_same_both_ways(request: ExportTraceServiceRequest) -> None:
    wire = request.SerializeToString()
    assert decoded(wire) is not None  # what a serializer writes is never handed back
    assert_same(*both(wire))


def _value(**member: Any) -> AnyValue:
    return AnyValue(**member)


def _request_with_attributes(attributes: list[KeyValue], **span_fields: Any) -> bytes:
    s = span("custom", START, START + 2 * NS, {}, **span_fields)
    s.attributes.extend(attributes)
    return traces_request([({"service.name": "chat"}, [s])]).SerializeToString()


def test_every_kind_of_attribute_value_reads_as_the_python_path_reads_it() -> None:
    long_text = "é" * 20  # 20 characters, 40 bytes: cut by characters, as Python strings are
    attributes = [
        KeyValue(key="s", value=_value(string_value="plain")),
        KeyValue(key="long", value=_value(string_value=long_text)),
        KeyValue(key="b", value=_value(bool_value=True)),
        KeyValue(key="i", value=_value(int_value=-(2**63))),
        KeyValue(key="d", value=_value(double_value=float("nan"))),
        KeyValue(key="bytes", value=_value(bytes_value=b"\x00\xab\xff")),
        KeyValue(key="idx", value=_value(string_value_strindex=-7)),
        KeyValue(key="unset", value=AnyValue()),
        KeyValue(key="no value"),
        KeyValue(value=_value(int_value=1)),  # no key: ""
        KeyValue(key="s", value=_value(string_value="second wins")),
    ]
    arr = attributes.append
    arr(
        KeyValue(
            key="array",
            value=_value(
                array_value={
                    "values": [
                        _value(string_value=long_text),
                        AnyValue(),
                        _value(array_value={"values": [_value(int_value=3)]}),
                        _value(kvlist_value={"values": [KeyValue(key="k", value=_value(double_value=1.5))]}),
                        _value(bytes_value=b"\x01"),
                    ]
                }
            ),
        )
    )
    arr(KeyValue(key="kv", value=_value(kvlist_value={"values": attributes[:3]})))
    wire = _request_with_attributes(attributes)
    python, compiled = both(wire, max_attribute_bytes=8)
    assert_same(python, compiled)
    ((resource, spans),) = decoded(wire, 8)[0]
    assert resource == {"service.name": "chat"}
    (only,) = spans
    attrs = only.attrs
    assert list(attrs) == ["s", "long", "b", "i", "d", "bytes", "idx", "", "array", "kv"]
    assert attrs["s"] == "second w"  # the later value, cut to 8 characters
    assert attrs["long"] == "é" * 8
    assert attrs["b"] is True and attrs["i"] == -(2**63) and attrs["d"] != attrs["d"]
    assert attrs["bytes"] == "00abff" and attrs["idx"] == -7 and attrs[""] == 1
    assert attrs["array"] == ["é" * 8, None, [3], {"k": 1.5}, "01"]
    assert attrs["kv"] == {"s": "plain", "long": "é" * 8, "b": True}
    # Cut: "second wins", "long" twice (top level and in kv) and once in the array.
    assert decoded(wire, 8)[1] == 4


def _merged(*parts: bytes) -> bytes:
    """Protobuf concatenation: the message parsed from it is every part merged in order."""
    return b"".join(parts)


def test_encodings_a_serializer_never_writes_fall_back_to_the_python_path() -> None:
    base = trace_pb2.Span(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="llm_request",
        start_time_unix_nano=START, end_time_unix_nano=START + NS,
    )  # fmt: skip
    vllm = vllm_span(START, queue=0.1, ttft=0.3, prefill=0.2, decode=1.0, e2e=1.4, prompt=10, output=20)

    def request_of(span_bytes: bytes) -> bytes:
        scope = trace_pb2.ScopeSpans()
        resource_spans = trace_pb2.ResourceSpans()
        resource_spans.resource.attributes.add(key="service.name").value.string_value = "chat"
        request = ExportTraceServiceRequest()
        # Length-delimited fields by hand: ScopeSpans.spans (2), ResourceSpans.scope_spans (2).
        scope_bytes = scope.SerializeToString() + _field(2, span_bytes)
        rs_bytes = resource_spans.SerializeToString() + _field(2, scope_bytes)
        return request.SerializeToString() + _field(1, rs_bytes)

    status_twice = _merged(
        vllm.SerializeToString(),
        trace_pb2.Span(status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR)).SerializeToString(),
        trace_pb2.Span(status=trace_pb2.Status(message="later")).SerializeToString(),
    )
    key_twice = _merged(
        base.SerializeToString(),
        _field(9, KeyValue(key="x", value=_value(string_value="first")).SerializeToString()),
        _field(9, KeyValue(key="x", value=_value(int_value=2)).SerializeToString()),
    )
    two_members = _field(
        9,
        _field(1, b"x")
        + _field(
            2, _value(array_value={"values": [_value(int_value=1)]}).SerializeToString() + _field(1, b"s")
        ),
    )
    deep = _value(int_value=1)
    for _ in range(40):
        deep = _value(array_value={"values": [deep]})
    cases = {
        "a singular message twice (status merges)": status_twice,
        "a singular scalar twice (name)": _merged(
            vllm.SerializeToString(), trace_pb2.Span(name="x").SerializeToString()
        ),
        "two oneof members in one AnyValue": _merged(base.SerializeToString(), two_members),
        "a group (wire type 3) as an unknown field": _merged(
            vllm.SerializeToString(),
            _varint(99 << 3 | 3) + _varint(99 << 3 | 4),  # an empty group
        ),
        "kind sent with a wire type it does not have": _merged(base.SerializeToString(), _field(6, b"\x01")),
        "nesting deeper than the decoder goes": _merged(
            base.SerializeToString(), _field(9, KeyValue(key="deep", value=deep).SerializeToString())
        ),
    }
    for label, span_bytes in cases.items():
        wire = request_of(span_bytes)
        assert decoded(wire) is None, label
        assert_same(*both(wire))
    # Sanity: the same builder with an ordinary span is decoded, not handed back.
    plain = request_of(vllm.SerializeToString())
    assert decoded(plain) is not None
    assert_same(*both(plain))
    # An attribute key twice is ordinary (repeated KeyValues; the dict keeps the last value).
    ((_, (only,)),), _ = decoded(request_of(key_twice))
    assert only.attrs == {"x": 2}
    assert_same(*both(request_of(key_twice)))


@settings(max_examples=300, deadline=None)
@given(requests(), st.lists(st.tuples(st.integers(0, 2**16), st.binary(max_size=8)), min_size=1, max_size=6))
def test_damaged_bytes_never_crash_the_decoder(request: ExportTraceServiceRequest, edits: list[Any]) -> None:
    """The server hands the decoder bodies upb has not seen: any damage gives None (upb and
    the Python path decide) or decoded spans, never a crash."""
    wire = bytearray(request.SerializeToString())
    for at, patch in edits:
        at %= len(wire) + 1
        wire[at : at + len(patch)] = patch  # overwrite, truncate or extend
    result = decoded(bytes(wire))
    if result is not None:
        groups, truncated = result
        assert truncated >= 0
        for attrs, spans in groups:
            assert isinstance(attrs, dict)
            assert all(isinstance(s, Span) for s in spans)
