"""Anything else that reports token counts: a span with input/output token counts under a
common name still counts as a request, timed by its own start and end. Phases it does not
report stay null — never invented."""

from __future__ import annotations

from api.ingest.conventions.common import Fields, count, text
from api.ingest.spans import Span

NAME = "generic"

PROMPT_KEYS = ("llm.usage.prompt_tokens", "llm.token_count.prompt", "prompt_tokens", "input_tokens")
OUTPUT_KEYS = (
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
    "completion_tokens",
    "output_tokens",
    "generated_tokens",
)


def claims(span: Span) -> bool:
    return any(k in span.attrs for k in PROMPT_KEYS + OUTPUT_KEYS)


def read(span: Span) -> Fields:
    a = span.attrs
    return Fields(
        prompt_tokens=count(a, *PROMPT_KEYS),
        output_tokens=count(a, *OUTPUT_KEYS),
        model=text(a, "llm.model_name", "llm.model", "model"),
        request_id=text(a, "request_id", "request.id"),
    )
