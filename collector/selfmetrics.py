"""The collector's own Prometheus metrics: what it received, dropped, spooled and delivered.

A private registry per collector (no global state, several collectors can live in one test
process), served on its own port so it never shares a socket with the span receiver.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

KINDS = ("traces", "metrics")


class CollectorMetrics:
    """Counters and gauges, one attribute each. ``kind`` is ``traces`` or ``metrics``."""

    def __init__(self) -> None:
        reg = self.registry = CollectorRegistry()
        ns = "inferwatch_collector"
        self.received_items = Counter(
            "received_items",
            "Items taken in: spans relayed, GPU samples, engine data points.",
            ["kind", "source"],
            namespace=ns,
            registry=reg,
        )
        self.queue_dropped_items = Counter(
            "queue_dropped_items",
            "Items dropped because the in-memory queue was full.",
            ["kind", "source"],
            namespace=ns,
            registry=reg,
        )
        self.queue_bytes = Gauge(
            "queue_bytes", "Bytes waiting in the in-memory queue.", namespace=ns, registry=reg
        )
        self.spooled_batches = Counter(
            "spooled_batches", "Batches written to the spool.", ["kind"], namespace=ns, registry=reg
        )
        self.spool_bytes = Gauge(
            "spool_bytes", "Bytes in the spool (compressed).", namespace=ns, registry=reg
        )
        self.spool_batches = Gauge("spool_batches", "Batches in the spool.", namespace=ns, registry=reg)
        self.spool_dropped_batches = Counter(
            "spool_dropped_batches",
            "Batches dropped from the spool (full, too large, write error).",
            ["reason"],
            namespace=ns,
            registry=reg,
        )
        self.spool_dropped_items = Counter(
            "spool_dropped_items",
            "Items in batches dropped from the spool.",
            ["kind", "reason"],
            namespace=ns,
            registry=reg,
        )
        self.relay_refused_items = Counter(
            "relay_refused_items",
            "Relayed items the spool could not keep (write_error: its disk is full or failing; full; "
            "too_large), answered 503 or 413 and never acknowledged: the engine keeps them.",
            ["kind", "reason"],
            namespace=ns,
            registry=reg,
        )
        self.delivered_batches = Counter(
            "delivered_batches", "Batches the server accepted.", ["kind"], namespace=ns, registry=reg
        )
        self.delivered_items = Counter(
            "delivered_items", "Items in batches the server accepted.", ["kind"], namespace=ns, registry=reg
        )
        self.rejected_items = Counter(
            "rejected_items",
            "Items the server refused for good (4xx, or partial success).",
            ["kind"],
            namespace=ns,
            registry=reg,
        )
        self.export_failures = Counter(
            "export_failures",
            "Failed delivery attempts, by HTTP status or 'connection'.",
            ["reason"],
            namespace=ns,
            registry=reg,
        )
        self.relay_requests = Counter(
            "relay_requests",
            "OTLP requests received from the engine.",
            ["path", "code"],
            namespace=ns,
            registry=reg,
        )
        self.scrape_errors = Counter(
            "scrape_errors",
            "Failed scrapes of the engine or DCGM endpoint.",
            ["target"],
            namespace=ns,
            registry=reg,
        )
        self.gpu_sample_seconds = Histogram(
            "gpu_sample_seconds",
            "Time to read every GPU once.",
            namespace=ns,
            registry=reg,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
        )
        self.gpus = Gauge("gpus", "GPUs sampled through NVML.", namespace=ns, registry=reg)
        for kind in KINDS:  # show zeros from the start, so rates and alerts work at once
            self.delivered_items.labels(kind)
            self.rejected_items.labels(kind)
            self.spooled_batches.labels(kind)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0 when absent), for tests and the benchmark, e.g.
        ``value("inferwatch_collector_delivered_items_total", {"kind": "traces"})``."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else found

    def serve(self, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
        """Serve ``/metrics`` on a daemon thread; stop it with ``server.shutdown()``."""
        return start_http_server(port, addr=host, registry=self.registry)
