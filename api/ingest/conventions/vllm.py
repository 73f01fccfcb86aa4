"""vLLM (`--otlp-traces-endpoint`): one SERVER span `llm_request` per request, emitted when
it finishes, started at arrival. Latencies are `gen_ai.latency.*` seconds. Newer versions
may add child spans `vllm_queue`, `vllm_prefill`, `vllm_decode`; older ones add
`gen_ai.latency.time_in_{scheduler,model_forward,model_execute}` (accepted, not needed).

The compiled decoder has a twin of `read` (with `genai` and traces._row) for plain spans:
vllm_row in api/ingest/_otlp.c. Change both; tests/ingest/test_span_rows.py holds them equal."""

from __future__ import annotations

from api.ingest.conventions.common import Fields, child_seconds, genai, number
from api.ingest.spans import Span

NAME = "vllm"


def claims(span: Span) -> bool:
    return span.name == "llm_request"


def read(span: Span) -> Fields:
    a = span.attrs
    fields = genai(span)
    fields.queue_s = number(a, "gen_ai.latency.time_in_queue")
    fields.ttft_s = number(a, "gen_ai.latency.time_to_first_token")
    fields.prefill_s = number(a, "gen_ai.latency.time_in_model_prefill")
    fields.decode_s = number(a, "gen_ai.latency.time_in_model_decode")
    fields.e2e_s = number(a, "gen_ai.latency.e2e")
    if fields.queue_s is None:
        fields.queue_s = child_seconds(span, "vllm_queue")
    if fields.prefill_s is None:
        fields.prefill_s = child_seconds(span, "vllm_prefill")
    if fields.decode_s is None:
        fields.decode_s = child_seconds(span, "vllm_decode")
    return fields
