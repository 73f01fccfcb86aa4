"""The server's own metrics, exposed at `GET /metrics` in Prometheus text format.

A registry per app (not prometheus_client's global one), so two apps in one process —
as in tests — never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 200_000)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingest_requests = Counter(
            "inferwatch_ingest_requests",
            "OTLP export requests by signal and HTTP status.",
            ["signal", "status"],
            registry=r,
        )
        self.ingest_items = Counter(
            "inferwatch_ingest_items",
            "Spans or data points received, by signal and outcome (accepted, rejected, ignored).",
            ["signal", "outcome"],
            registry=r,
        )
        self.ingest_rejected = Counter(
            "inferwatch_ingest_rejected_items",
            "Items rejected, by signal and reason.",
            ["signal", "reason"],
            registry=r,
        )
        self.ingest_bad_requests = Counter(
            "inferwatch_ingest_bad_requests",
            "Whole OTLP requests refused, by signal and error code.",
            ["signal", "code"],
            registry=r,
        )
        self.truncated_attributes = Counter(
            "inferwatch_ingest_truncated_attributes",
            "String attributes cut to the length limit.",
            registry=r,
        )
        self.rows_written = Counter(
            "inferwatch_store_rows_written",
            "Rows handed to the store, by table.",
            ["table"],
            registry=r,
        )
        self.batch_size = Histogram(
            "inferwatch_ingest_batch_items",
            "Items per OTLP request.",
            ["signal"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.store_seconds = Histogram(
            "inferwatch_store_call_seconds",
            "Store call latency by query name.",
            ["query"],
            buckets=_STORE_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "inferwatch_store_errors",
            "Store calls that failed, by query name.",
            ["query"],
            registry=r,
        )
        self.ingest_in_flight = Gauge(
            "inferwatch_ingest_in_flight",
            "OTLP requests being decoded or written now.",
            registry=r,
        )
        self.ingest_repeats = Counter(
            "inferwatch_ingest_repeats",
            "Requests answered without storing their rows again: retries of requests already accepted.",
            ["table"],
            registry=r,
        )
        self.wal_bytes = Gauge(
            "inferwatch_wal_waiting_bytes",
            "Bytes of accepted rows in the write-ahead log, not yet in the store.",
            registry=r,
        )
        self.wal_flushes = Counter(
            "inferwatch_wal_flushes",
            "Inserts from the write-ahead log, by table and outcome (inserted, failed, set_aside).",
            ["table", "outcome"],
            registry=r,
        )
        self.wal_refusals = Counter(
            "inferwatch_wal_refusals",
            "Requests answered 503 because the write-ahead log was full or could not be written.",
            registry=r,
        )
        self.wal_replayed_rows = Counter(
            "inferwatch_wal_replayed_rows",
            "Rows found in the write-ahead log at start (left by a killed or stopped server), by table.",
            ["table"],
            registry=r,
        )
        self.wal_torn_bytes = Counter(
            "inferwatch_wal_torn_bytes",
            "Bytes of torn records found at the end of a segment on replay (a write cut short by a crash).",
            registry=r,
        )

    def observe_store(self, name: str, seconds: float, ok: bool) -> None:
        """The store's observer hook: latency per query name, and failures."""
        self.store_seconds.labels(name).observe(seconds)
        if not ok:
            self.store_errors.labels(name).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
