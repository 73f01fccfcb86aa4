"""Delivery of one compressed OTLP batch to the server, retried like the OTLP exporter.

Within one ``export`` call: only 429, 502, 503, 504 and connection errors are retried, with
exponential backoff and jitter or the server's ``Retry-After``, until an overall deadline;
a shutdown cuts any wait short. What happens after that is the caller's choice: the batch
stays in the spool, so nothing is lost by giving up on one call.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import random
import threading
import time
from dataclasses import dataclass

import httpx
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector import collector_version

log = logging.getLogger(__name__)

RETRYABLE = frozenset({429, 502, 503, 504})
# The batch is fine but the server won't take it now (wrong token or URL, a server fault):
# keep it and try again later rather than lose it.
HOLD = frozenset({401, 403, 404, 408})
MAX_BACKOFF_S = 32.0


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # 2xx: remove from the spool
    REJECTED = "rejected"  # the server refuses this batch for good (most 4xx): remove and count
    RETRY_LATER = "retry_later"  # keep it; try again after a pause


@dataclass(frozen=True)
class ExportResult:
    outcome: Outcome
    status: int | None = None  # last HTTP status, None for a connection error
    reason: str = ""
    rejected_items: int = 0  # partial success: items the server refused inside a 2xx
    retry_after_s: float | None = None


class OtlpHttpExporter:
    """POSTs gzip-compressed OTLP protobuf to ``<server>/v1/<kind>``."""

    def __init__(
        self, server: str, token: str | None, deadline_s: float, client: httpx.Client | None = None
    ) -> None:
        self._server = server.rstrip("/")
        self._deadline_s = deadline_s
        self._client = client or httpx.Client(timeout=httpx.Timeout(deadline_s, connect=min(5.0, deadline_s)))
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
            "User-Agent": f"inferwatch-collector/{collector_version()}",
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._client.close()

    def export(self, kind: str, body: bytes, cancel: threading.Event) -> ExportResult:
        """Deliver ``body`` (already gzip-compressed) within the deadline."""
        url = f"{self._server}/v1/{kind}"
        deadline = time.monotonic() + self._deadline_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                response = self._client.post(
                    url, content=body, headers=self._headers, timeout=max(0.1, remaining)
                )
            except httpx.HTTPError as exc:
                result = ExportResult(Outcome.RETRY_LATER, None, f"connection: {type(exc).__name__}")
            else:
                result = self._judge(kind, response)
                if result.outcome is not Outcome.RETRY_LATER or response.status_code not in RETRYABLE:
                    return result
            wait = result.retry_after_s
            if wait is None:
                wait = min(2.0**attempt, MAX_BACKOFF_S) * random.uniform(0.8, 1.2)
            attempt += 1
            if time.monotonic() + wait > deadline or cancel.wait(wait):
                return result

    def _judge(self, kind: str, response: httpx.Response) -> ExportResult:
        status = response.status_code
        if 200 <= status < 300:
            return ExportResult(Outcome.DELIVERED, status, rejected_items=_partial_rejects(kind, response))
        reason = f"HTTP {status}: {response.text[:200]}"
        if status in RETRYABLE:
            return ExportResult(
                Outcome.RETRY_LATER,
                status,
                reason,
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status in HOLD or status >= 500:
            return ExportResult(Outcome.RETRY_LATER, status, reason)
        return ExportResult(Outcome.REJECTED, status, reason)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _partial_rejects(kind: str, response: httpx.Response) -> int:
    """Items refused inside a successful answer (OTLP ``partial_success``), 0 if none or unreadable."""
    if "protobuf" not in response.headers.get("content-type", "") or not response.content:
        return 0
    try:
        if kind == "traces":
            traces = ExportTraceServiceResponse.FromString(response.content)
            return int(traces.partial_success.rejected_spans)
        metrics = ExportMetricsServiceResponse.FromString(response.content)
        return int(metrics.partial_success.rejected_data_points)
    except DecodeError:  # a malformed answer to a delivered batch is not worth failing over
        return 0
