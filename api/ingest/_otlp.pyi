"""Types of the compiled OTLP wire decoder (api/ingest/_otlp.c)."""

from typing import Any

def decode_traces(
    data: bytes, max_attribute_bytes: int, span_type: type[Any], /
) -> tuple[list[tuple[dict[str, Any], list[Any]]], int] | None: ...
