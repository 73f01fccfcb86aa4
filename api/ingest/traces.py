"""Spans → request rows.

Each resource's spans are indexed so stage spans (vLLM's `vllm_prefill`, TGI's `prefill`,
SGLang's `prefill_forward`, …) hang under their request span; then the first convention
that claims a span reads it, and the common validation below turns it into a row or a
reasoned rejection. Spans no convention claims (HTTP handlers, tokenizer spans) are not
requests: they are counted as ignored, not rejected.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from api.ingest.body import Encoding, check_count, parse
from api.ingest.conventions import CONVENTIONS, vllm
from api.ingest.conventions.common import Fields
from api.ingest.spans import AttributeDecoder, Rejected, Resource, Span, resource_of

_otlp: ModuleType | None
try:  # the compiled reader of the wire format (api/ingest/_otlp.c), built by `pip install`
    from api.ingest import _otlp
except ImportError:  # no C compiler where it was installed: the Python path reads everything
    _otlp = None

WIRE_DECODER = _otlp is not None
"""Whether protobuf requests are read by the compiled decoder (tests insist on it in CI)."""

# fmt: off
STAGE_NAMES = frozenset(
    {
        "vllm_queue", "vllm_prefill", "vllm_decode",
        "queued", "infer", "prefill", "decode",
        "prefill_forward", "decode_forward", "dispatch", "tokenize", "detokenize",
    }
)
# fmt: on

MAX_REQUEST_SECONDS = 86_400.0
"""A request longer than a day is a clock or unit error, not a request."""

_FUTURE_SLACK_NS = 86_400 * 10**9

STATUS_ERROR = 2
_UINT32_MAX = 2**32 - 1
_UINT16_MAX = 2**16 - 1
_NO_TRACE = bytes(16)
_NO_SPAN = bytes(8)
_FLOAT32_MAX = 3.4028234663852886e38

REQUEST_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("end_time", pa.timestamp("us", tz="UTC")),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("request_id", pa.string()),
        ("cluster", pa.string()),
        ("host", pa.string()),
        ("deployment", pa.string()),
        ("model", pa.string()),
        ("framework", pa.string()),
        ("prompt_tokens", pa.uint32()),
        ("cached_tokens", pa.uint32()),
        ("output_tokens", pa.uint32()),
        ("n", pa.uint16()),
        ("max_tokens", pa.uint32()),
        ("temperature", pa.float32()),
        ("queue_s", pa.float64()),
        ("ttft_s", pa.float64()),
        ("prefill_s", pa.float64()),
        ("decode_s", pa.float64()),
        ("e2e_s", pa.float64()),
        ("finish_reason", pa.string()),
        ("error", pa.string()),
        ("gpu_uuids", pa.list_(pa.string())),
    ]
)
COLUMNS = tuple(REQUEST_SCHEMA.names)
_ROW = pa.struct(list(REQUEST_SCHEMA))
"""A row as an Arrow struct: Arrow reads the row tuples in one pass, with no transposing."""


@dataclass(slots=True)
class TraceBatch:
    """The outcome of one OTLP traces request."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    """One tuple per stored span, in `COLUMNS` order."""
    rejected: Counter[str] = field(default_factory=Counter)
    ignored: int = 0
    truncated_attributes: int = 0
    received: int = 0

    @property
    def accepted(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> dict[str, list[Any]]:
        if not self.rows:
            return {c: [] for c in COLUMNS}
        return {c: list(values) for c, values in zip(COLUMNS, zip(*self.rows, strict=True), strict=True)}

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())

    def to_arrow(self) -> pa.Table:
        if not self.rows:
            return REQUEST_SCHEMA.empty_table()
        return pa.Table.from_struct_array(pa.array(self.rows, type=_ROW))

    def keys(self) -> list[str]:
        return [row[2] + row[3] for row in self.rows]


def read_traces(
    data: bytes, encoding: Encoding, *, max_items: int, max_attribute_bytes: int, now_ns: int, oldest_ns: int
) -> TraceBatch:
    """An OTLP traces request body (decompressed) to rows, or `BadRequest` when it does not
    decode or holds more than `max_items` spans.

    Protobuf goes to the compiled decoder first, which checks the bytes as upb would; it
    hands back anything malformed, unusual or over `max_items`, and upb then parses it (and
    refuses it with its own reason) for the Python path."""
    if encoding is Encoding.PROTOBUF:
        decoded = _compiled(data, max_attribute_bytes, now_ns, oldest_ns, max_items)
        if decoded is not None:
            return _normalised(decoded, now_ns, oldest_ns)
    request = parse(data, encoding, ExportTraceServiceRequest)
    spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    check_count(spans, max_items, "spans")
    return normalise_traces(
        request, max_attribute_bytes=max_attribute_bytes, now_ns=now_ns, oldest_ns=oldest_ns
    )


def normalise_traces(
    request: ExportTraceServiceRequest,
    *,
    max_attribute_bytes: int,
    now_ns: int,
    oldest_ns: int = 0,
    wire: bytes | None = None,
) -> TraceBatch:
    """`oldest_ns`: spans that start earlier are rejected (the store's retention would drop
    them on insert, so accepting them would acknowledge what is never stored).

    `wire`: the protobuf bytes `request` was parsed from, if it came as protobuf. The
    compiled decoder then reads spans and attributes from them, several times faster than
    walking the parsed message, with the same result (it hands back anything unusual)."""
    decoded = _compiled(wire, max_attribute_bytes, now_ns, oldest_ns) if wire is not None else None
    if decoded is None:
        decoder = AttributeDecoder(max_attribute_bytes)
        groups = [
            (decoder.decode(resource_spans.resource.attributes), _decode_spans(resource_spans, decoder))
            for resource_spans in request.resource_spans
        ]
        decoded = groups, decoder.truncated
    return _normalised(decoded, now_ns, oldest_ns)


Decoded = tuple[list[tuple[dict[str, Any], list[Any]]], int]
"""Each ResourceSpans as (resource attributes, its spans), and how many attribute values
were cut short. The compiled decoder gives plain vLLM spans as finished rows (tuples)."""


def _compiled(
    wire: bytes, max_attribute_bytes: int, now_ns: int, oldest_ns: int, max_spans: int = 2**62
) -> Decoded | None:
    """The compiled decoder's reading of protobuf bytes, or None where upb and the Python
    path must decide: no compiled decoder, unusual or malformed bytes, over `max_spans`."""
    if _otlp is None:
        return None
    rules = (resource_of, vllm.NAME, now_ns + _FUTURE_SLACK_NS, oldest_ns, max_spans)
    return _otlp.decode_traces(wire, max_attribute_bytes, Span, rules)


def _normalised(decoded: Decoded, now_ns: int, oldest_ns: int) -> TraceBatch:
    batch = TraceBatch()
    rows = batch.rows
    seen: set[bytes] = set()
    groups, truncated = decoded
    for resource_attrs, items in groups:
        resource = resource_of(resource_attrs)
        batch.received += len(items)
        # Rows the decoder finished depend on no other span (it checks): kept in place.
        spans = [s for s in items if type(s) is Span]
        if not spans:
            rows.extend(items)
            continue
        by_id = {s.span_id: s for s in spans if s.span_id}
        for span in spans:
            parent = by_id.get(span.parent_span_id) if span.parent_span_id else None
            if parent is not None and span.name in STAGE_NAMES:
                parent.children.append(span)
        for span in items:
            if type(span) is tuple:
                rows.append(span)
                continue
            if span.name in STAGE_NAMES and span.parent_span_id in by_id:
                continue  # read through its parent
            for convention in CONVENTIONS:
                if convention.claims(span):
                    break
            else:
                batch.ignored += 1
                continue
            key = span.trace_id + span.span_id
            if key in seen:
                batch.ignored += 1  # the same span twice in one request: keep the first
                continue
            try:
                rows.append(_row(span, resource, convention.NAME, convention.read(span), now_ns, oldest_ns))
            except Rejected as rejection:
                batch.rejected[rejection.reason] += 1
                continue
            seen.add(key)
    batch.truncated_attributes = truncated
    return batch


def _decode_spans(resource_spans: Any, decoder: AttributeDecoder) -> list[Span]:
    out: list[Span] = []
    append = out.append
    decode = decoder.decode
    for scope_spans in resource_spans.scope_spans:
        for s in scope_spans.spans:
            status = s.status
            # Positional, in Span's field order (trace_id … status_message): the hot loop.
            append(
                Span(
                    s.trace_id,
                    s.span_id,
                    s.parent_span_id,
                    s.name,
                    s.kind,
                    s.start_time_unix_nano,
                    s.end_time_unix_nano,
                    decode(s.attributes),
                    status.code,
                    status.message,
                )
            )
    return out


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if math.isnan(value) or math.isinf(value):
        raise Rejected(f"{name} is not a finite number")
    if value < 0:
        raise Rejected(f"{name} is negative")
    if value > MAX_REQUEST_SECONDS:
        raise Rejected(f"{name} is longer than a day")
    return value


def _tokens(name: str, value: int | None, limit: int = _UINT32_MAX) -> int | None:
    if value is None:
        return None
    if value < 0:
        raise Rejected(f"{name} is not a whole number of tokens")
    if value > limit:
        raise Rejected(f"{name} is too large")
    return value


def _row(
    span: Span, resource: Resource, framework: str, f: Fields, now_ns: int, oldest_ns: int = 0
) -> tuple[Any, ...]:
    """The span's row in `COLUMNS` order, or `Rejected`. Checks run in a fixed order, so a
    span wrong in several ways is always rejected for the same reason. In-range values
    skip the checking calls (NaN fails every comparison, so it still reaches them).

    Plain vLLM spans get their rows from the compiled twin of these checks (vllm_row in
    _otlp.c), which hands back every span these would reject."""
    trace_id = span.trace_id
    span_id = span.span_id
    start_ns = span.start_ns
    end_ns = span.end_ns
    if len(trace_id) != 16 or trace_id == _NO_TRACE:
        raise Rejected("missing or malformed trace id")
    if len(span_id) != 8 or span_id == _NO_SPAN:
        raise Rejected("missing or malformed span id")
    if start_ns <= 0:
        raise Rejected("missing start time")
    if end_ns and end_ns < start_ns:
        raise Rejected("span ends before it starts")
    if start_ns > now_ns + _FUTURE_SLACK_NS:
        raise Rejected("start time is more than a day in the future")
    if start_ns < oldest_ns:
        raise Rejected("start time is older than the retention period")
    e2e = f.e2e_s
    if e2e is None:
        if not end_ns:
            raise Rejected("missing end time")
        e2e = (end_ns - start_ns) / 1e9
        if not 0 <= e2e <= MAX_REQUEST_SECONDS:
            e2e = _seconds("span duration", e2e)
    elif not 0 <= e2e <= MAX_REQUEST_SECONDS:
        e2e = _seconds("e2e time", e2e)
    assert e2e is not None
    queue = f.queue_s
    if queue is not None and not 0 <= queue <= MAX_REQUEST_SECONDS:
        queue = _seconds("queue time", queue)
    ttft = f.ttft_s
    if ttft is not None and not 0 <= ttft <= MAX_REQUEST_SECONDS:
        ttft = _seconds("time to first token", ttft)
    prefill = f.prefill_s
    if prefill is not None and not 0 <= prefill <= MAX_REQUEST_SECONDS:
        prefill = _seconds("prefill time", prefill)
    decode = f.decode_s
    if decode is not None and not 0 <= decode <= MAX_REQUEST_SECONDS:
        decode = _seconds("decode time", decode)
    temperature = f.temperature
    if temperature is not None and not -_FLOAT32_MAX <= temperature <= _FLOAT32_MAX:
        raise Rejected("temperature is not a finite number")  # past float32, it would be stored as inf
    prompt = f.prompt_tokens
    if prompt is not None and not 0 <= prompt <= _UINT32_MAX:
        prompt = _tokens("prompt tokens", prompt)
    cached = f.cached_tokens
    if cached is not None and not 0 <= cached <= _UINT32_MAX:
        cached = _tokens("cached prompt tokens", cached)
    output = f.output_tokens
    if output is not None and not 0 <= output <= _UINT32_MAX:
        output = _tokens("output tokens", output)
    n = f.n
    if n is not None and not 0 <= n <= _UINT16_MAX:
        n = _tokens("n", n, _UINT16_MAX)
    max_tokens = f.max_tokens
    if max_tokens is not None and not 0 <= max_tokens <= _UINT32_MAX:
        max_tokens = _tokens("max tokens", max_tokens)
    start_us = start_ns // 1000
    error = ""
    if span.status_code == STATUS_ERROR:
        error = span.status_message[:512] or "error"
    elif f.finish_reason in ("error", "abort"):
        error = f.finish_reason
    return (
        start_us,
        start_us + int(e2e * 1e6),
        trace_id.hex(),
        span_id.hex(),
        f.request_id[:256],
        resource.cluster,
        resource.host,
        resource.deployment,
        f.model or resource.model,
        framework,
        prompt,
        cached,
        output,
        n,
        max_tokens,
        temperature,
        queue,
        ttft,
        prefill,
        decode,
        e2e,
        f.finish_reason,
        error,
        resource.gpu_uuids,
    )
