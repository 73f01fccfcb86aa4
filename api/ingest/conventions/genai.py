"""OpenTelemetry GenAI semantic conventions: a span with `gen_ai.*` usage or operation
attributes (`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`,
`gen_ai.usage.cache_read.input_tokens`, `gen_ai.request.model`, …). The conventions carry
no phase timings, so only the end-to-end time (the span's duration) is known, unless the
sender adds vLLM-style `gen_ai.latency.*` keys."""

from __future__ import annotations

from api.ingest.conventions.common import Fields, genai, number
from api.ingest.spans import Span

NAME = "genai"

_MARKERS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.operation.name",
)


def claims(span: Span) -> bool:
    return any(key in span.attrs for key in _MARKERS)


def read(span: Span) -> Fields:
    a = span.attrs
    fields = genai(span)
    fields.queue_s = number(a, "gen_ai.latency.time_in_queue")
    fields.ttft_s = number(a, "gen_ai.latency.time_to_first_token", "gen_ai.server.time_to_first_token")
    fields.prefill_s = number(a, "gen_ai.latency.time_in_model_prefill")
    fields.decode_s = number(a, "gen_ai.latency.time_in_model_decode")
    fields.e2e_s = number(a, "gen_ai.latency.e2e")
    return fields
