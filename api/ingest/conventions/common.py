"""Helpers shared by the convention modules: typed reads of attributes, and the fields a
request row is made of."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

from api.ingest.spans import Span


@dataclass(slots=True)
class Fields:
    """What a convention learned about one request. Seconds; None = not reported."""

    queue_s: float | None = None
    ttft_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    e2e_s: float | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    output_tokens: int | None = None
    n: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    request_id: str = ""
    model: str = ""
    finish_reason: str = ""


def number(attrs: dict[str, Any], *keys: str) -> float | None:
    """The first of `keys` present as a number (ints, floats and numeric strings).

    A present but non-numeric or non-finite value is returned as NaN so validation
    rejects the span with a reason, instead of silently dropping the field.
    """
    for key in keys:
        if key in attrs:
            value = attrs[key]
            kind = type(value)
            if kind is float:
                return value
            if kind is int:
                return float(value)
            if isinstance(value, bool):
                return math.nan
            if isinstance(value, int | float):
                return float(value)
            try:
                return float(value)
            except (TypeError, ValueError):
                return math.nan
    return None


_EXACT_FLOAT_INT = 2**53


def count(attrs: dict[str, Any], *keys: str) -> int | None:
    """The first of `keys` present as a whole number; negative or fractional → -1 (rejected)."""
    for key in keys:
        if key in attrs:
            found = attrs[key]
            # The common case, without the float round trip (exact below 2**53, as floats are).
            if type(found) is int and 0 <= found <= _EXACT_FLOAT_INT:
                return found
            break
    else:
        return None
    value = number(attrs, *keys)
    if value is None:
        return None
    if not math.isfinite(value) or value < 0 or value != int(value):
        return -1
    return int(value)


def text(attrs: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = attrs.get(key)
        if value not in (None, ""):
            return str(value)
    return ""


def finish_reason(attrs: dict[str, Any]) -> str:
    """`gen_ai.response.finish_reasons`: a list, or (vLLM) a JSON-encoded list in a string."""
    value = attrs.get("gen_ai.response.finish_reasons", attrs.get("gen_ai.response.finish_reason"))
    if value is None:
        return ""
    if isinstance(value, str):
        return _finish_text(value)
    return _finish_value(value)


@functools.lru_cache(maxsize=256)
def _finish_text(value: str) -> str:
    """`finish_reason` of a string; cached, as every span of a batch says much the same."""
    stripped = value.strip()
    if not stripped.startswith("["):
        return stripped[:64]
    try:
        parsed = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):  # "[[[[…" deeper than json allows
        return stripped[:64]
    return _finish_value(parsed)


def _finish_value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value if v is not None)[:64]
    return str(value)[:64]


def genai(span: Span) -> Fields:
    """The fields every convention shares: OpenTelemetry GenAI names, current and deprecated."""
    a = span.attrs
    return Fields(
        prompt_tokens=count(a, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
        output_tokens=count(a, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
        cached_tokens=count(
            a,
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "gen_ai.usage.cached_tokens",
        ),
        n=count(a, "gen_ai.request.n", "gen_ai.usage.num_sequences", "gen_ai.request.choice.count"),
        max_tokens=count(a, "gen_ai.request.max_tokens"),
        temperature=number(a, "gen_ai.request.temperature"),
        request_id=text(a, "gen_ai.request.id", "gen_ai.response.id"),
        model=text(a, "gen_ai.response.model", "gen_ai.request.model"),
        finish_reason=finish_reason(a),
    )


def child_seconds(span: Span, *names: str) -> float | None:
    """Total duration of the direct children named `names`, or None if there are none."""
    total = None
    for child in span.children:
        if child.name in names:
            total = (total or 0.0) + child.duration_s
    return total
