"""Text Generation Inference: root spans `generate`, `generate_stream`, `completions`,
`chat_completions` whose fields `total_time`, `validation_time`, `queue_time`,
`inference_time`, `time_per_token` are duration strings (`"12.3ms"`, `"1.2s"`, `"850µs"`),
with children `queued`, `infer`, `prefill`, `decode`."""

from __future__ import annotations

import math
import re
from typing import Any

from api.ingest.conventions.common import Fields, child_seconds, count, genai, text
from api.ingest.spans import Span

NAME = "tgi"

ROOTS = frozenset({"generate", "generate_stream", "completions", "chat_completions"})

_DURATION = re.compile(r"^\s*(-?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ns|µs|us|ms|s|m|h)?\s*$")
_SCALE = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def claims(span: Span) -> bool:
    return span.name in ROOTS and (
        "total_time" in span.attrs
        or "inference_time" in span.attrs
        or any(c.name in ("queued", "infer", "prefill", "decode") for c in span.children)
    )


def duration(value: Any) -> float | None:
    """A Rust `Duration` debug string (`"12.3ms"`, `"1.2s"`, `"1m"`) or a number in seconds.

    Unparseable text gives NaN, so the span is rejected with a reason."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        return math.nan
    return float(match.group(1)) * _SCALE[match.group(2)]


def read(span: Span) -> Fields:
    a = span.attrs
    fields = genai(span)
    queue = duration(a.get("queue_time"))
    inference = duration(a.get("inference_time"))
    total = duration(a.get("total_time"))
    fields.queue_s = queue if queue is not None else child_seconds(span, "queued")
    fields.e2e_s = total
    fields.prefill_s = child_seconds(span, "prefill")
    fields.decode_s = child_seconds(span, "decode")
    if fields.prefill_s is not None and fields.queue_s is not None:
        fields.ttft_s = fields.queue_s + fields.prefill_s
    if fields.output_tokens is None:
        fields.output_tokens = count(a, "generated_tokens", "gen_ai.usage.output_tokens")
    if fields.prompt_tokens is None:
        fields.prompt_tokens = count(a, "input_length", "prompt_tokens")
    if fields.decode_s is None and inference is not None and fields.prefill_s is not None:
        fields.decode_s = max(0.0, inference - fields.prefill_s)
    if not fields.finish_reason:
        fields.finish_reason = text(a, "finish_reason")
    return fields
