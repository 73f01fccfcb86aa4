"""The compiled decoder's own vLLM rows and its own checks of the wire give what upb and the
Python rules give.

`read_traces` no longer lets upb parse a protobuf body first: the decoder (api/ingest/_otlp.c)
checks the bytes itself and finishes plain vLLM spans as rows (vllm_row, the C twin of
conventions/vllm.py and traces._row). So for every body, `read_traces` must answer exactly
what upb + the pure-Python path answer: the same rows, rejections, ignored and truncation
counts, or a `BadRequest` where upb refuses the bytes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from api.errors import BadRequest
from api.ingest import traces
from api.ingest.body import Encoding
from api.ingest.spans import Span, resource_of
from api.ingest.traces import TraceBatch, normalise_traces, read_traces
from tests.fuzz.test_span_properties import requests, set_value
from tests.ingest.test_wire_decoder import assert_same as same_batches
from tests.otlp import NS, resource, span, traces_request, vllm_span
from tests.otlp import wire_field as _field
from tests.otlp import wire_varint as _varint

NOW_NS = time.time_ns()
OLDEST_NS = NOW_NS - 30 * 86_400 * NS
START = NOW_NS - 3600 * NS
MAX_ITEMS = 50


def python_path(wire: bytes, max_attribute_bytes: int) -> TraceBatch | str:
    """What the server answered before the decoder checked bytes itself: upb, then Python."""
    try:
        request = ExportTraceServiceRequest.FromString(wire)
    except DecodeError:
        return "refused"
    received = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if received > MAX_ITEMS:
        return f"{received} spans"
    return normalise_traces(
        request, max_attribute_bytes=max_attribute_bytes, now_ns=NOW_NS, oldest_ns=OLDEST_NS
    )


def compiled_path(wire: bytes, max_attribute_bytes: int) -> TraceBatch | str:
    try:
        return read_traces(
            wire,
            Encoding.PROTOBUF,
            max_items=MAX_ITEMS,
            max_attribute_bytes=max_attribute_bytes,
            now_ns=NOW_NS,
            oldest_ns=OLDEST_NS,
        )
    except BadRequest as exc:
        if "spans; the limit is" in exc.message:
            return exc.message.split("holds ")[1].split(";")[0]
        assert "not a valid protobuf ExportTraceServiceRequest" in exc.message
        return "refused"


def assert_same(wire: bytes, max_attribute_bytes: int = 8192) -> TraceBatch | str:
    python, compiled = python_path(wire, max_attribute_bytes), compiled_path(wire, max_attribute_bytes)
    if isinstance(python, str) or isinstance(compiled, str):
        assert compiled == python
        return compiled
    same_batches(python, compiled)
    assert compiled.keys() == python.keys()
    assert compiled.to_arrow().equals(python.to_arrow())
    return compiled


def items(wire: bytes, max_attribute_bytes: int = 8192) -> list[Any]:
    """What the decoder hands over for each span: a finished row (tuple) or a Span."""
    assert traces._otlp is not None
    rules = (resource_of, "vllm", NOW_NS + 86_400 * NS, OLDEST_NS, MAX_ITEMS)
    decoded = traces._otlp.decode_traces(wire, max_attribute_bytes, Span, rules)
    assert decoded is not None
    return [item for _, group in decoded[0] for item in group]


# --- vLLM spans: plain ones and every way of being not quite plain -------------------------

LATENCIES = [
    "gen_ai.latency.time_in_queue",
    "gen_ai.latency.time_to_first_token",
    "gen_ai.latency.time_in_model_prefill",
    "gen_ai.latency.time_in_model_decode",
    "gen_ai.latency.e2e",
]
COUNTS = [
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cached_tokens",
    "gen_ai.request.n",
    "gen_ai.usage.num_sequences",
    "gen_ai.request.choice.count",
    "gen_ai.request.max_tokens",
]
TEXTS = [
    "gen_ai.request.id",
    "gen_ai.response.id",
    "gen_ai.response.model",
    "gen_ai.request.model",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.finish_reason",
]
KEYS = [*LATENCIES, *COUNTS, *TEXTS, "gen_ai.request.temperature", "gen_ai.request.top_p", "other", ""]

ODD = [
    float("nan"), float("inf"), -float("inf"), -1.0, -0.0, 0, 86_400.0, 86_400.5, 86_401, 1.5, 3.0, 1e300,
    3.4028234663852886e38, 3.5e38, -3.5e38, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**53, 2**53 + 1,
    2**63 - 1, -(2**63), True, False, b"\x01", "", " ", "12", "1.5", "nan", "x", "é" * 9, "stop",
    "  abort ", "error", '["stop"]', '["stop", "length"]', ' [ "a" ,"b" ] ', "[]", "[ ]", '["error"]',
    '["abort"]', '["a\\"b"]', '["a\\u0041"]', "[1]", '[null, "x"]', '["x",]', '["x"] y', '["é"]',
    '["' + "w" * 70 + '"]', '["' + "a" * 40 + '", "' + "b" * 40 + '"]', '["' + "a" * 63 + '", "b"]',
    "[" * 50, "\x1c[\"x\"]\x1f", "\x85stop", "x" * 300, [], ["stop"], {"a": 1},
]  # fmt: skip
values = st.one_of(
    st.floats(0, 120),
    st.integers(0, 5000),
    st.sampled_from(ODD),
    st.text(max_size=12),
    st.none(),  # an AnyValue with no member: the key is left out
)


def plain_attributes(draw: st.DrawFn) -> list[tuple[str, Any]]:
    queue, prefill, decode = draw(st.floats(0, 1)), draw(st.floats(0, 5)), draw(st.floats(0, 60))
    return [
        ("gen_ai.response.model", draw(st.sampled_from(["llama", "meta-llama/Llama-3.1-70B-Instruct"]))),
        ("gen_ai.request.id", f"cmpl-{draw(st.integers(0, 10**6))}"),
        ("gen_ai.request.max_tokens", draw(st.integers(1, 4096))),
        ("gen_ai.request.temperature", draw(st.sampled_from([0.0, 0.7, 1]))),
        ("gen_ai.request.n", 1),
        ("gen_ai.usage.prompt_tokens", draw(st.integers(0, 8000))),
        ("gen_ai.usage.completion_tokens", draw(st.integers(0, 800))),
        ("gen_ai.latency.time_in_queue", queue),
        ("gen_ai.latency.time_to_first_token", queue + prefill),
        ("gen_ai.latency.e2e", queue + prefill + decode),
        ("gen_ai.latency.time_in_model_prefill", prefill),
        ("gen_ai.latency.time_in_model_decode", decode),
        ("gen_ai.response.finish_reasons", draw(st.sampled_from(['["stop"]', '["length"]', '["abort"]']))),
    ]


@st.composite
def vllm_requests(draw: st.DrawFn) -> bytes:
    """Requests of vLLM-shaped spans, most plain, many changed in one or a few places."""
    request = ExportTraceServiceRequest()
    ids: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(1, 2))):
        rs = request.resource_spans.add()
        res = resource(gpus=draw(st.sampled_from([[], ["GPU-1"], ["GPU-1", "GPU-2"]])))
        if draw(st.booleans()):
            res["inferwatch.model"] = "from-resource"
        for key, value in res.items():
            set_value(rs.resource.attributes.add(key=key).value, value)
        spans = rs.scope_spans.add().spans
        for _ in range(draw(st.integers(1, 6))):
            trace_id, span_id = (
                draw(st.binary(min_size=16, max_size=16)),
                draw(st.binary(min_size=8, max_size=8)),
            )
            if ids and draw(st.integers(0, 9)) == 0:  # the same key, or span id, again
                trace_id, span_id = draw(st.sampled_from(ids))
                if draw(st.booleans()):
                    trace_id = draw(st.binary(min_size=16, max_size=16))
            ids.append((trace_id, span_id))
            start = draw(
                st.one_of(
                    st.integers(START, START + 600 * NS),
                    st.sampled_from(
                        [0, 1, OLDEST_NS - 1, OLDEST_NS, NOW_NS + 86_400 * NS, NOW_NS + 86_401 * NS]
                    ),
                )
            )
            end = draw(
                st.one_of(st.integers(start, start + 120 * NS), st.sampled_from([0, max(start - 1, 0)]))
            )
            name = draw(st.sampled_from(["llm_request"] * 6 + ["vllm_prefill", "vllm_queue", "llm_request "]))
            parent = (
                draw(st.sampled_from([s.span_id for s in spans])) if spans and draw(st.booleans()) else b""
            )
            s = spans.add(
                trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                start_time_unix_nano=start, end_time_unix_nano=min(end, 2**64 - 1),
            )  # fmt: skip
            attrs = plain_attributes(draw)
            for _ in range(draw(st.integers(0, 3))):  # change, drop or add one
                key = draw(st.sampled_from(KEYS))
                change = draw(st.integers(0, 2))
                if change == 0:
                    attrs = [(k, v) for k, v in attrs if k != key]
                else:
                    attrs.append((key, draw(values)))
            for key, value in attrs:
                set_value(s.attributes.add(key=key).value, value)
            if draw(st.integers(0, 4)) == 0:
                s.status.code = 2
                s.status.message = draw(st.sampled_from(["", "boom", "x" * 600, "é" * 513]))
    return request.SerializeToString()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vllm_requests(), st.sampled_from([0, 4, 16, 40, 8192]))
def test_vllm_spans_give_the_rows_of_the_python_rules(wire: bytes, max_attribute_bytes: int) -> None:
    assert_same(wire, max_attribute_bytes)


def test_each_key_with_each_odd_value_gives_the_rows_of_the_python_rules() -> None:
    plain = {
        "gen_ai.response.model": "llama", "gen_ai.request.id": "cmpl-7", "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.7, "gen_ai.request.n": 1, "gen_ai.usage.prompt_tokens": 10,
        "gen_ai.usage.completion_tokens": 20, "gen_ai.latency.time_in_queue": 0.1,
        "gen_ai.latency.time_to_first_token": 0.3, "gen_ai.latency.e2e": 1.4,
        "gen_ai.latency.time_in_model_prefill": 0.2, "gen_ai.latency.time_in_model_decode": 1.0,
        "gen_ai.response.finish_reasons": '["stop"]',
    }  # fmt: skip
    for key in KEYS:
        wires = []
        for value in ODD:
            s = span("llm_request", START, START + 2 * NS, {})
            for k, v in {**plain, key: value}.items():
                set_value(s.attributes.add(key=k).value, v)
            wires.append(traces_request([(resource(), [s])]).SerializeToString())
        for max_attribute_bytes in (0, 40, 8192):  # every string cut; some; none
            for wire in wires:
                assert_same(wire, max_attribute_bytes)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_any_request_the_span_fuzzer_draws_reads_the_same_without_upb(
    request: ExportTraceServiceRequest,
) -> None:
    assert_same(request.SerializeToString())


def test_a_plain_vllm_span_becomes_a_row_in_c_and_others_stay_spans() -> None:
    plain = vllm_span(START, queue=0.1, ttft=0.3, prefill=0.2, decode=1.0, e2e=1.4, prompt=10, output=20)
    no_queue = vllm_span(START, queue=0.1, ttft=0.3, prefill=0.2, decode=1.0, e2e=1.4, prompt=10, output=20)
    no_queue.attributes.pop(0)  # gen_ai.latency.time_in_queue: read from a child, in Python
    tgi = span("generate", START, START + NS, {"total_time": "1.2s", "gen_ai.usage.output_tokens": 3})
    wire = traces_request([(resource(gpus=["GPU-1"]), [plain, no_queue, tgi])]).SerializeToString()
    row, *spans = items(wire)
    assert [type(i) for i in spans] == [Span, Span]
    assert row == (
        START // 1000, START // 1000 + 1_400_000, plain.trace_id.hex(), plain.span_id.hex(), "cmpl-1",
        "prod", "node-1", "chat", "llama", "vllm", 10, None, 20, None, None, None,
        0.1, 0.3, 0.2, 1.0, 1.4, "stop", "", ["GPU-1"],
    )  # fmt: skip
    batch = assert_same(wire)
    assert isinstance(batch, TraceBatch) and batch.accepted == 3


def test_a_span_status_error_gives_the_python_rules_error_text() -> None:
    for code, message in [(2, ""), (2, "boom"), (2, "x" * 600), (2, "é" * 513), (1, "fine"), (0, "")]:
        for finish in ("stop", "abort", "error"):
            s = vllm_span(START, queue=0.1, ttft=0.3, prefill=0.2, decode=1.0, e2e=1.4, prompt=1, output=2,
                          finish=finish, status_code=code, status_message=message)  # fmt: skip
            assert_same(traces_request([(resource(), [s])]).SerializeToString())


def test_spans_tied_to_others_by_id_are_left_to_the_python_rules() -> None:
    def plain(**kw: Any) -> trace_pb2.Span:
        return vllm_span(
            START, queue=0.1, ttft=0.3, prefill=0.2, decode=1.0, e2e=1.4, prompt=1, output=2, **kw
        )

    parent = plain(span_id=b"\x01" * 8)
    child = span("vllm_prefill", START, START + NS, {}, parent=parent.span_id)
    twin = plain(trace_id=parent.trace_id, span_id=parent.span_id)  # the same key: the first wins
    same_id = plain(span_id=b"\x02" * 8)
    other_trace = plain(span_id=b"\x02" * 8)  # another key, the same span id in one resource
    # A 17-byte trace id + 7-byte span id makes the same 24 bytes as a real key.
    spliced = span("llm_request", START, START + NS, {}, trace_id=b"\x05" * 16 + b"\x06", span_id=b"\x06" * 7)
    lone = plain(trace_id=b"\x05" * 16, span_id=b"\x06" * 8)
    wire = traces_request([(resource(), [parent, child, twin, same_id, other_trace, lone, spliced])])
    assert [type(i) for i in items(wire.SerializeToString())] == [Span] * 7
    batch = assert_same(wire.SerializeToString())
    assert isinstance(batch, TraceBatch)
    assert (batch.accepted, batch.ignored, dict(batch.rejected)) == (4, 2, {})
    # In separate resources, span ids (not keys) are free to repeat.
    apart = traces_request(
        [(resource(), [plain(span_id=b"\x03" * 8)]), (resource(), [plain(span_id=b"\x03" * 8)])]
    )
    assert [type(i) for i in items(apart.SerializeToString())] == [tuple, tuple]


def test_truncated_strings_are_counted_once_for_rows_made_in_c() -> None:
    s = vllm_span(START, queue=0.1, ttft=0.3, prefill=0.2, decode=1.0, e2e=1.4, prompt=1, output=2,
                  request_id="r" * 300, model="m" * 20)  # fmt: skip
    s.attributes.add(key="ignored").value.string_value = "é" * 11
    wire = traces_request([(resource(), [s])]).SerializeToString()
    (row,) = items(wire, max_attribute_bytes=10)
    assert (row[4], row[8]) == ("r" * 10, "m" * 10)
    batch = assert_same(wire, max_attribute_bytes=10)
    assert isinstance(batch, TraceBatch) and batch.truncated_attributes == 3


# --- the bytes: what upb refuses is refused, over the limit is refused, before any rows -----


BAD = b"\xed\xa0\x80"  # a UTF-16 surrogate: not UTF-8 to upb or Python


def _request(span_bytes: bytes = b"", scope_bytes: bytes = b"", rs_bytes: bytes = b"") -> bytes:
    base = vllm_span(START, queue=0.1, ttft=0.3, prefill=0.2, decode=1.0, e2e=1.4, prompt=1, output=2)
    scope = scope_bytes + _field(2, base.SerializeToString() + span_bytes)
    return _field(1, _field(1, b"") + _field(2, scope) + rs_bytes)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(_request(span_bytes=_field(3, BAD)), id="trace_state"),
        pytest.param(_request(span_bytes=_field(11, _field(2, BAD))), id="event name"),
        pytest.param(_request(span_bytes=_field(13, _field(3, BAD))), id="link trace_state"),
        pytest.param(_request(span_bytes=_field(13, _field(4, _field(1, BAD)))), id="link attribute key"),
        pytest.param(_request(span_bytes=_field(9, _field(1, BAD))), id="key of an attribute with no value"),
        pytest.param(_request(span_bytes=_field(9, _field(1, b"k") + _field(2, _field(1, BAD)))), id="value"),
        pytest.param(_request(span_bytes=_field(15, _field(2, BAD))), id="status message"),
        pytest.param(_request(span_bytes=_field(5, BAD)), id="name twice, second bad"),
        pytest.param(_request(scope_bytes=_field(1, _field(1, BAD))), id="scope name"),
        pytest.param(_request(scope_bytes=_field(3, BAD)), id="scope schema_url"),
        pytest.param(_request(rs_bytes=_field(3, BAD)), id="resource schema_url"),
        pytest.param(_field(1, _field(1, _field(3, _field(2, BAD)))), id="resource entity ref"),
        pytest.param(_request(span_bytes=_field(11, b"\x12\x05ab")), id="event truncated"),
        pytest.param(_request(span_bytes=_varint(2**29 << 3) + b"\x01"), id="field number too large"),
        pytest.param(_request(span_bytes=_varint(20 << 3) + b"\xff" * 10 + b"\x01"), id="varint too long"),
        pytest.param(_request()[:-3], id="cut short"),
    ],
)
def test_bytes_upb_refuses_are_refused_without_upb(wire: bytes) -> None:
    assert python_path(wire, 8192) == "refused"
    assert compiled_path(wire, 8192) == "refused"


def test_bytes_upb_accepts_but_never_seen_in_practice_read_the_same() -> None:
    unusual = [
        _request(span_bytes=_field(3, "é".encode())),  # a valid trace_state
        _request(span_bytes=_varint(99 << 3 | 3) + _varint(99 << 3 | 4)),  # a group
        _request(span_bytes=_varint(6 << 3 | 2) + b"\x00"),  # kind with another wire type
        _request(span_bytes=_varint(11 << 3 | 0) + b"\x01"),  # events as a varint
        _request(span_bytes=_field(13, _field(4, _field(2, _field(5, _field(1, _field(1, b"x"))))))),
    ]
    for wire in unusual:
        assert isinstance(assert_same(wire), TraceBatch)


def test_too_many_spans_are_refused_with_their_count() -> None:
    s = [span("llm_request", START, START + NS, {"gen_ai.latency.e2e": 1.0}) for _ in range(MAX_ITEMS + 1)]
    assert assert_same(traces_request([(resource(), s)]).SerializeToString()) == f"{MAX_ITEMS + 1} spans"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    vllm_requests(), st.lists(st.tuples(st.integers(0, 2**16), st.binary(max_size=6)), min_size=1, max_size=4)
)
@example(b"", [(0, b"\x0a\x80")])
def test_damaged_bytes_are_refused_or_read_as_upb_reads_them(wire: bytes, edits: list[Any]) -> None:
    damaged = bytearray(wire)
    for at, patch in edits:
        at %= len(damaged) + 1
        damaged[at : at + len(patch)] = patch
    assert_same(bytes(damaged))
