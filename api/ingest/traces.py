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
from typing import Any

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from api.ingest.conventions import CONVENTIONS
from api.ingest.conventions.common import Fields
from api.ingest.spans import AttributeDecoder, Rejected, Resource, Span, resource_of

STAGE_NAMES = frozenset(
    {
        "vllm_queue", "vllm_prefill", "vllm_decode",
        "queued", "infer", "prefill", "decode",
        "prefill_forward", "decode_forward", "dispatch", "tokenize", "detokenize",
    }
)

MAX_REQUEST_SECONDS = 86_400.0
"""A request longer than a day is a clock or unit error, not a request."""

_FUTURE_SLACK_NS = 86_400 * 10**9

STATUS_ERROR = 2

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


@dataclass(slots=True)
class TraceBatch:
    """The outcome of one OTLP traces request."""

    columns: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    rejected: Counter[str] = field(default_factory=Counter)
    ignored: int = 0
    truncated_attributes: int = 0
    received: int = 0

    @property
    def accepted(self) -> int:
        return len(self.columns["span_id"])

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_pydict(self.columns, schema=REQUEST_SCHEMA)

    def keys(self) -> list[str]:
        return [t + s for t, s in zip(self.columns["trace_id"], self.columns["span_id"], strict=True)]


def normalise_traces(
    request: ExportTraceServiceRequest, *, max_attribute_bytes: int, now_ns: int
) -> TraceBatch:
    decoder = AttributeDecoder(max_attribute_bytes)
    batch = TraceBatch()
    seen: set[bytes] = set()
    for resource_spans in request.resource_spans:
        resource = resource_of(decoder.decode(resource_spans.resource.attributes))
        spans = _decode_spans(resource_spans, decoder)
        batch.received += len(spans)
        by_id = {s.span_id: s for s in spans if s.span_id}
        for span in spans:
            parent = by_id.get(span.parent_span_id) if span.parent_span_id else None
            if parent is not None and span.name in STAGE_NAMES:
                parent.children.append(span)
        for span in spans:
            if span.name in STAGE_NAMES and span.parent_span_id in by_id:
                continue  # read through its parent
            convention = next((c for c in CONVENTIONS if c.claims(span)), None)
            if convention is None:
                batch.ignored += 1
                continue
            key = span.trace_id + span.span_id
            if key in seen:
                batch.ignored += 1  # the same span twice in one request: keep the first
                continue
            try:
                _append(batch.columns, span, resource, convention.NAME, convention.read(span), now_ns)
            except Rejected as rejection:
                batch.rejected[rejection.reason] += 1
                continue
            seen.add(key)
    batch.truncated_attributes = decoder.truncated
    return batch


def _decode_spans(resource_spans: Any, decoder: AttributeDecoder) -> list[Span]:
    out = []
    for scope_spans in resource_spans.scope_spans:
        for s in scope_spans.spans:
            out.append(
                Span(
                    trace_id=s.trace_id,
                    span_id=s.span_id,
                    parent_span_id=s.parent_span_id,
                    name=s.name,
                    kind=s.kind,
                    start_ns=s.start_time_unix_nano,
                    end_ns=s.end_time_unix_nano,
                    attrs=decoder.decode(s.attributes),
                    status_code=s.status.code,
                    status_message=s.status.message,
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


def _tokens(name: str, value: int | None, limit: int = 2**32 - 1) -> int | None:
    if value is None:
        return None
    if value < 0:
        raise Rejected(f"{name} is not a whole number of tokens")
    if value > limit:
        raise Rejected(f"{name} is too large")
    return value


def _append(
    cols: dict[str, list[Any]], span: Span, resource: Resource, framework: str, f: Fields, now_ns: int
) -> None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise Rejected("missing or malformed trace id")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise Rejected("missing or malformed span id")
    if span.start_ns <= 0:
        raise Rejected("missing start time")
    if span.end_ns and span.end_ns < span.start_ns:
        raise Rejected("span ends before it starts")
    if span.start_ns > now_ns + _FUTURE_SLACK_NS:
        raise Rejected("start time is more than a day in the future")
    e2e = _seconds("e2e time", f.e2e_s)
    if e2e is None:
        if not span.end_ns:
            raise Rejected("missing end time")
        e2e = _seconds("span duration", span.duration_s)
    assert e2e is not None
    queue = _seconds("queue time", f.queue_s)
    ttft = _seconds("time to first token", f.ttft_s)
    prefill = _seconds("prefill time", f.prefill_s)
    decode = _seconds("decode time", f.decode_s)
    temperature = f.temperature
    if temperature is not None and not math.isfinite(temperature):
        raise Rejected("temperature is not a finite number")
    start_us = span.start_ns // 1000
    error = ""
    if span.status_code == STATUS_ERROR:
        error = span.status_message[:512] or "error"
    elif f.finish_reason in ("error", "abort"):
        error = f.finish_reason
    # Everything is validated before the first append, so a rejection never leaves the
    # columns of different lengths.
    row = (
        start_us,
        start_us + int(e2e * 1e6),
        span.trace_id.hex(),
        span.span_id.hex(),
        f.request_id[:256],
        resource.cluster,
        resource.host,
        resource.deployment,
        f.model or resource.model,
        framework,
        _tokens("prompt tokens", f.prompt_tokens),
        _tokens("cached prompt tokens", f.cached_tokens),
        _tokens("output tokens", f.output_tokens),
        _tokens("n", f.n, 2**16 - 1),
        _tokens("max tokens", f.max_tokens),
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
    for name, value in zip(COLUMNS, row, strict=True):
        cols[name].append(value)
