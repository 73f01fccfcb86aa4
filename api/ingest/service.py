"""The ingest service: an OTLP request body in, rows stored, an OTLP response out.

Counted at every step (`api.telemetry.ServerMetrics`); a request either fails whole with a
precise 4xx (undecodable, too large, wrong type) or is stored minus the items it rejects,
which the response lists in `partial_success`.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from api.ingest import gpu_wire
from api.ingest.body import Encoding, Limits, decompress, encoding_of, serialize
from api.ingest.metrics import read_metrics
from api.ingest.traces import read_traces
from api.ingest.writer import Writer
from api.settings import Settings
from api.telemetry import ServerMetrics


@dataclass(frozen=True, slots=True)
class Reply:
    body: bytes
    media_type: str
    accepted: int
    rejected: int


def dedup_token(kind: str, keys: list[str]) -> str:
    """A digest of the batch's natural keys: a retried batch gets the same token."""
    digest = hashlib.sha256(kind.encode())
    # One update over the joined keys: the same digest as one update per key and newline.
    digest.update("".join(f"{key}\n" for key in sorted(keys)).encode())
    return digest.hexdigest()


def describe(rejected: Counter[str], noun: str) -> str:
    """`"3 spans rejected: 2 × span ends before it starts; 1 × missing span id"`."""
    total = sum(rejected.values())
    parts = [f"{n} × {reason}" for reason, n in rejected.most_common(10)]
    more = len(rejected) - 10
    if more > 0:
        parts.append(f"and {more} more reasons")
    return f"{total} {noun} rejected: " + "; ".join(parts)


class Ingestor:
    def __init__(self, settings: Settings, writer: Writer, metrics: ServerMetrics) -> None:
        self._settings = settings
        self._writer = writer
        self._metrics = metrics
        self._limits = Limits(settings.max_body_bytes, settings.max_decompressed_bytes)
        self._known = gpu_wire.Known()  # GPU attribute sets decoded for earlier requests

    def encoding(self, content_type: str | None) -> Encoding:
        return encoding_of(content_type)

    def traces(self, body: bytes, encoding: Encoding, content_encoding: str | None) -> Reply:
        data = decompress(body, content_encoding, self._limits)
        now_ns = time.time_ns()
        batch = read_traces(
            data,
            encoding,
            max_items=self._settings.max_items_per_request,
            max_attribute_bytes=self._settings.max_attribute_bytes,
            now_ns=now_ns,
            oldest_ns=now_ns - self._settings.raw_ttl_days * 86_400 * 10**9,
        )
        if batch.accepted:
            self._writer.write("requests", batch.to_arrow(), dedup_token("requests", batch.keys()))
        self._count(
            "traces",
            batch.received,
            batch.accepted,
            batch.ignored,
            batch.rejected,
            batch.truncated_attributes,
        )
        response = ExportTraceServiceResponse()
        if batch.rejected:
            response.partial_success.rejected_spans = batch.rejected_count
            response.partial_success.error_message = describe(batch.rejected, "spans")
        return Reply(serialize(response, encoding), encoding.value, batch.accepted, batch.rejected_count)

    def metrics(self, body: bytes, encoding: Encoding, content_encoding: str | None) -> Reply:
        data = decompress(body, content_encoding, self._limits)
        now_ns = time.time_ns()
        batch = read_metrics(
            data,
            encoding,
            max_items=self._settings.max_items_per_request,
            max_attribute_bytes=self._settings.max_attribute_bytes,
            now_ns=now_ns,
            oldest_ns=now_ns - self._settings.raw_ttl_days * 86_400 * 10**9,
            known=self._known,
        )
        if batch.gpu_rows:
            self._writer.write("gpu_samples", batch.gpu_table(), batch.gpu_token())
        if batch.engine_rows:
            token = dedup_token("engine", batch.engine_keys())
            self._writer.write("engine_metrics", batch.engine_table(), token)
        self._count(
            "metrics",
            batch.received,
            batch.accepted,
            batch.ignored,
            batch.rejected,
            batch.truncated_attributes,
        )
        response = ExportMetricsServiceResponse()
        if batch.rejected:
            response.partial_success.rejected_data_points = batch.rejected_count
            response.partial_success.error_message = describe(batch.rejected, "data points")
        return Reply(serialize(response, encoding), encoding.value, batch.accepted, batch.rejected_count)

    def _count(
        self, signal: str, received: int, accepted: int, ignored: int, rejected: Counter[str], truncated: int
    ) -> None:
        m = self._metrics
        m.batch_size.labels(signal).observe(received)
        m.ingest_items.labels(signal, "accepted").inc(accepted)
        m.ingest_items.labels(signal, "ignored").inc(ignored)
        m.ingest_items.labels(signal, "rejected").inc(sum(rejected.values()))
        for reason, n in rejected.items():
            m.ingest_rejected.labels(signal, _reason_label(reason)).inc(n)
        if truncated:
            m.truncated_attributes.inc(truncated)


def _reason_label(reason: str) -> str:
    # Keep label values bounded: drop the figures that some reasons quote.
    head = reason.split(" value ", 1)[0]
    return head[:80]
