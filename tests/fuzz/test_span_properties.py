"""Property: any structurally valid OTLP traces request becomes request rows or reasoned
rejections — never an exception — for every span convention (vLLM, SGLang, TGI, GenAI,
generic), whatever the attributes hold: junk keys, wrong types, NaN and infinities, negative
or huge durations, missing or malformed ids, unicode. The same requests also go through the
HTTP route into chDB, where the answer must agree with the offline normalisation."""

from __future__ import annotations

import base64
import json
import math
import time
from typing import Any

from fastapi.testclient import TestClient
from google.protobuf import json_format
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from api.ingest.body import Encoding, parse
from api.ingest.conventions import tgi
from api.ingest.traces import MAX_REQUEST_SECONDS, STAGE_NAMES, normalise_traces
from api.store import Store
from api.store.gateway import Query
from tests.otlp import NS, span, traces_request

NOW_NS = time.time_ns()  # near the server's clock, so the HTTP test stores rows too
MAX_ATTRIBUTE_BYTES = 8192  # the server's default: finish reasons this long reach json.loads
RETENTION_NS = 30 * 86_400 * NS  # the server's default raw_ttl_days

# Keys each convention reads, so drawn attribute sets often claim a span and fill its fields.
CONVENTION_KEYS = [
    # vLLM / SGLang / GenAI latency keys
    "gen_ai.latency.time_in_queue",
    "gen_ai.latency.time_to_first_token",
    "gen_ai.latency.time_in_model_prefill",
    "gen_ai.latency.time_in_model_decode",
    "gen_ai.latency.e2e",
    "gen_ai.server.time_to_first_token",
    # GenAI usage and request keys (every convention)
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cached_tokens",
    "gen_ai.request.n",
    "gen_ai.request.max_tokens",
    "gen_ai.request.temperature",
    "gen_ai.request.id",
    "gen_ai.response.id",
    "gen_ai.response.model",
    "gen_ai.request.model",
    "gen_ai.response.finish_reasons",
    "gen_ai.operation.name",
    # TGI
    "total_time",
    "inference_time",
    "queue_time",
    "generated_tokens",
    "input_length",
    "finish_reason",
    # generic
    "llm.usage.prompt_tokens",
    "llm.token_count.completion",
    "prompt_tokens",
    "output_tokens",
    "llm.model_name",
    "request_id",
    # junk
    "x",
    "",
    "gen_ai.",
    "ünïcödé.ключ",
]
SPAN_NAMES = [
    "llm_request",  # vLLM
    "prefill Req 1a2b3c4d",  # SGLang
    "Req x",
    "generate",  # TGI
    "generate_stream",
    "chat_completions",
    "POST /v1/chat/completions",  # not a request in any convention (unless generic keys)
    *sorted(STAGE_NAMES),
    "",
]
RESOURCE_KEYS = [
    "host.name",
    "service.name",
    "inferwatch.cluster",
    "inferwatch.deployment",
    "inferwatch.model",
    "inferwatch.gpu.uuids",
    "k8s.pod.name",
]


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` eight times in ten, so that many spans become rows; `bad` otherwise."""
    return st.integers(0, 9).flatmap(lambda i: good if i < 8 else bad)


text = st.text(max_size=24)
plausible = st.one_of(
    st.integers(0, 100_000), st.floats(0, 120), st.sampled_from(["12.3ms", "1.5s", '["stop"]', "chat"])
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 0.5, -1, 2**32, 2**16, 86_401.0, 1e39, -0.0]),
)
strings = st.one_of(
    text,
    st.sampled_from(["2m", "-1s", "1e999s", "nan", "inf", "[]", "[[", "7", "[1e999]"]),
    st.integers(1, 3000).map(lambda n: "[" * n),  # deeper than json.loads allows
)
leaves = st.one_of(numbers, strings, st.booleans(), st.binary(max_size=8), st.none())
junk = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)
    ),
    max_leaves=6,
)
values = mostly(plausible, junk)
ids16 = mostly(
    st.binary(min_size=15, max_size=15).map(lambda b: b + b"\x01"),
    st.one_of(st.just(b""), st.just(bytes(16)), st.binary(max_size=20)),
)
ids8 = mostly(
    st.binary(min_size=7, max_size=7).map(lambda b: b + b"\x01"),
    st.one_of(st.just(b""), st.just(bytes(8)), st.binary(max_size=10)),
)
starts = mostly(
    st.integers(min_value=NOW_NS - 3600 * NS, max_value=NOW_NS + 60 * NS),
    st.one_of(st.just(0), st.integers(min_value=0, max_value=2**64 - 1)),
)


def ends(start: int) -> st.SearchStrategy[int]:
    return mostly(
        st.integers(0, 120 * NS).map(lambda d: min(start + d, 2**64 - 1)),
        st.one_of(st.just(0), st.integers(min_value=0, max_value=2**64 - 1)),
    )


def set_value(target: AnyValue, value: Any) -> None:
    """Any Python value as an OTLP AnyValue, kvlists and bytes included (None stays empty)."""
    if value is None:
        return
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list):
        target.array_value.SetInParent()
        for item in value:
            set_value(target.array_value.values.add(), item)
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        for key, item in value.items():
            set_value(target.kvlist_value.values.add(key=key).value, item)
    else:
        target.string_value = str(value)


def kvs(mapping: dict[str, Any]) -> list[KeyValue]:
    out = []
    for key, value in mapping.items():
        kv = KeyValue(key=key)
        set_value(kv.value, value)
        out.append(kv)
    return out


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(
            kvs(draw(st.dictionaries(st.sampled_from(RESOURCE_KEYS), values, max_size=4)))
        )
        spans = rs.scope_spans.add().spans
        for _ in range(draw(st.integers(0, 5))):
            start = draw(starts)
            end = draw(ends(start))
            parent = b""
            if spans and draw(st.booleans()):
                parent = draw(st.sampled_from([s.span_id for s in spans]))  # a stage under an earlier span
            s = trace_pb2.Span(
                trace_id=draw(ids16),
                span_id=draw(ids8),
                parent_span_id=parent,
                name=draw(st.one_of(st.sampled_from(SPAN_NAMES), text)),
                kind=draw(st.integers(0, 5)),
                start_time_unix_nano=start,
                end_time_unix_nano=end,
            )
            attrs = draw(st.dictionaries(st.sampled_from(CONVENTION_KEYS), values, max_size=8))
            if s.name in tgi.ROOTS and draw(st.booleans()):
                attrs.setdefault("total_time", draw(values))  # TGI's marker, else TGI is rarely drawn
            s.attributes.extend(kvs(attrs))
            s.status.code = draw(st.sampled_from([0, 1, 2]))  # type: ignore[assignment]
            s.status.message = draw(text)
            spans.append(s)
    return request


def read_through_parent(request: ExportTraceServiceRequest) -> int:
    """Stage spans whose parent is in the same resource: read as part of it, counted nowhere."""
    n = 0
    for rs in request.resource_spans:
        spans = [s for ss in rs.scope_spans for s in ss.spans]
        ids = {s.span_id for s in spans if s.span_id}
        n += sum(1 for s in spans if s.name in STAGE_NAMES and s.parent_span_id in ids)
    return n


def check_batch(request: ExportTraceServiceRequest) -> Any:
    batch = normalise_traces(
        request, max_attribute_bytes=MAX_ATTRIBUTE_BYTES, now_ns=NOW_NS, oldest_ns=NOW_NS - RETENTION_NS
    )
    received = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    assert batch.received == received
    assert batch.accepted + batch.ignored + batch.rejected_count == received - read_through_parent(request)
    assert all(reason for reason in batch.rejected)
    table = batch.to_arrow()  # whatever was accepted must fit the stored types
    assert table.num_rows == batch.accepted
    for row in table.to_pylist():
        assert len(row["trace_id"]) == 32 and len(row["span_id"]) == 16
        assert 0 <= row["e2e_s"] <= MAX_REQUEST_SECONDS
        for phase in ("queue_s", "ttft_s", "prefill_s", "decode_s"):
            assert row[phase] is None or 0 <= row[phase] <= MAX_REQUEST_SECONDS
        assert row["temperature"] is None or math.isfinite(row["temperature"])
        assert row["end_time"] >= row["time"]
    assert len(set(batch.keys())) == batch.accepted  # one row per span
    return batch


# A finish reason nested deeper than json.loads allows raised RecursionError (a 500).
DEEP_FINISH = traces_request(
    [({}, [span("llm_request", NOW_NS, NOW_NS + NS, {"gen_ai.response.finish_reasons": "[" * 5000})])]
)
# A span older than the store keeps rows was acknowledged, then dropped by the table's TTL.
OLD_SPAN = traces_request(
    [({}, [span("llm_request", NOW_NS - 400 * 86_400 * NS, NOW_NS - 400 * 86_400 * NS + NS, {})])]
)
# A temperature past float32 was accepted, then stored as inf.
HUGE_TEMPERATURE = traces_request(
    [({}, [span("llm_request", NOW_NS, NOW_NS + NS, {"gen_ai.request.temperature": 1e39})])]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
@example(DEEP_FINISH)
@example(HUGE_TEMPERATURE)
@example(OLD_SPAN)
def test_any_traces_request_gives_rows_or_reasoned_rejections(request: ExportTraceServiceRequest) -> None:
    check_batch(request)


def test_the_regression_examples_are_judged_as_the_rules_say() -> None:
    deep = check_batch(DEEP_FINISH)
    assert deep.accepted == 1  # the finish reason is kept as text, cut to 64 characters
    assert deep.columns["finish_reason"] == ["[" * 64]
    huge = check_batch(HUGE_TEMPERATURE)
    assert huge.accepted == 0
    assert dict(huge.rejected) == {"temperature is not a finite number": 1}
    old = check_batch(OLD_SPAN)
    assert old.accepted == 0
    assert dict(old.rejected) == {"start time is older than the retention period": 1}


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON as an SDK writes it: ids in hex, not protobuf's base64."""
    document = json_format.MessageToDict(request)

    def hexify(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else hexify(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [hexify(v) for v in node]
        return node

    return json.dumps(hexify(document)).encode()


STORED = Query(
    "test.fuzz.stored",
    "SELECT concat(trace_id, span_id) AS key FROM requests WHERE key IN {keys:Array(String)}",
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(request=requests(), as_json=st.booleans())
@example(request=DEEP_FINISH, as_json=True)
@example(request=HUGE_TEMPERATURE, as_json=False)
@example(request=OLD_SPAN, as_json=False)
def test_the_http_route_stores_what_normalisation_accepts(
    client: TestClient, store: Store, request: ExportTraceServiceRequest, as_json: bool
) -> None:
    if as_json:
        body, content_type = to_otlp_json(request), "application/json"
        request = parse(body, Encoding.JSON, ExportTraceServiceRequest)  # what the server will see
    else:
        body, content_type = request.SerializeToString(), "application/x-protobuf"
    response = client.post("/v1/traces", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    if as_json:
        reply = ExportTraceServiceResponse()
        json_format.Parse(response.content, reply)
    else:
        reply = ExportTraceServiceResponse.FromString(response.content)
    now = time.time_ns()
    batch = normalise_traces(
        request, max_attribute_bytes=MAX_ATTRIBUTE_BYTES, now_ns=now, oldest_ns=now - RETENTION_NS
    )
    assert reply.partial_success.rejected_spans == batch.rejected_count
    assert bool(reply.partial_success.error_message) == bool(batch.rejected)
    keys = batch.keys()
    stored = {row["key"] for row in store.rows(STORED, keys=keys)} if keys else set()
    assert stored == set(keys)
