"""Types of the compiled OTLP wire decoder (api/ingest/_otlp.c)."""

from collections.abc import Callable
from typing import Any

Rules = tuple[Callable[[dict[str, Any]], Any], str, int, int, int]
"""(resource_of, framework, latest_ns, oldest_ns, max_spans): plain vLLM spans become rows."""

def decode_traces(
    data: bytes, max_attribute_bytes: int, span_type: type[Any], rules: Rules | None = None, /
) -> tuple[list[tuple[dict[str, Any], list[Any]]], int] | None: ...
