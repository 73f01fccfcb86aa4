"""Types of the compiled OTLP metrics reader (api/ingest/_metrics.c); api/ingest/gpu_wire.py
wraps it."""

from typing import Any

Item = tuple[Any, ...]
Scanned = tuple[list[bytes], list[Item], list[bytes], bytes, bytes, bytes, bytes, bytes, bytes, int]
"""(resources, items, sets, set_resource, time, value, kind, field, set_of_point, points)"""

def scan_metrics(data: bytes, names: dict[str, int], /) -> Scanned | None: ...
def join_points(
    time: Any,
    value: Any,
    kind: Any,
    field: Any,
    set_of_point: Any,
    set_gpu: Any,
    set_pid: Any,
    bounds: list[tuple[int, float, float]],
    widths: tuple[int, ...],
    latest_ns: int,
    oldest_ns: int,
    /,
) -> tuple[
    bytes, int, int, bytes, bytes, bytes, list[tuple[bytes, bytes, int]], tuple[bytes, bytes, bytes, bytes]
]: ...
def arrow_batch(
    n: int,
    row_ns: Any,
    row_gpu: Any,
    row_set: Any,
    gpu_texts: list[str],
    labels: list[str],
    set_index: Any,
    set_name: Any,
    set_deployment: Any,
    columns: list[tuple[bytes, bytes, int]],
    widths: tuple[int, ...],
    procs: tuple[bytes, bytes, bytes, bytes],
    /,
) -> int: ...
