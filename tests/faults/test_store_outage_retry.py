"""A store outage longer than the collector's patience for failing batches loses nothing: the
server's 503 ("not now") never counts toward MAX_SERVER_ERRORS, which exists for a batch
that makes the server fail (500) every time. The server here is a real HTTP server that
answers 503 for a while, then 200."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from collector.export import OtlpHttpExporter
from collector.queue import Payload, PayloadQueue
from collector.selfmetrics import CollectorMetrics
from collector.shipper import MAX_SERVER_ERRORS, Shipper
from collector.spool import DiskSpool
from tests.faults.scenarios import wait_for


class FlakyServer:
    """Answers `failures` requests with `status` (Retry-After: 0), then 200."""

    def __init__(self, status: int, failures: int) -> None:
        self.answers: list[int] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                code = status if len(owner.answers) < failures else 200
                owner.answers.append(code)
                self.send_response(code)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def ship_one_batch(tmp_path: Path, status: int, failures: int) -> tuple[CollectorMetrics, FlakyServer]:
    server = FlakyServer(status, failures)
    metrics = CollectorMetrics()
    queue = PayloadQueue(2**20)
    spool = DiskSpool(tmp_path / "spool", 2**20, metrics)
    exporter = OtlpHttpExporter(server.url, None, deadline_s=0.001)
    shipper = Shipper(queue, spool, exporter, metrics, flush_interval_s=0.01, pause_max_s=0.01)
    shipper.start()
    try:
        queue.put(Payload("traces", b"", 7, "relay"))
        wait_for(
            lambda: (
                len(spool) == 0
                and len(server.answers) > min(failures, MAX_SERVER_ERRORS) - 1
                and not spool.entries()
            ),
            30,
            "the batch to leave the spool",
        )
    finally:
        shipper.stop(grace_s=0)
        exporter.close()
        server.close()
    return metrics, server


def test_a_long_run_of_503s_keeps_the_batch_until_it_is_delivered(tmp_path: Path) -> None:
    failures = 6 * MAX_SERVER_ERRORS
    metrics, server = ship_one_batch(tmp_path, 503, failures)
    assert server.answers == [503] * failures + [200]
    # The sender counted more failed export calls than the limit for poisonous batches, and
    # still delivered. An export call may fit more than one attempt in its deadline when the
    # answers are fast (seen: 15 answers in 8 calls; 30 answers in 18–26 calls over 20 runs),
    # so 30 answers keep the count of calls well above the limit of 5.
    failed_calls = metrics.value("inferwatch_collector_export_failures_total", {"reason": "503"})
    assert MAX_SERVER_ERRORS < failed_calls <= failures
    assert metrics.value("inferwatch_collector_delivered_items_total", {"kind": "traces"}) == 7
    assert metrics.value("inferwatch_collector_rejected_items_total", {"kind": "traces"}) == 0


def test_a_batch_the_server_fails_on_every_time_is_still_dropped_after_max_server_errors(
    tmp_path: Path,
) -> None:
    metrics, server = ship_one_batch(tmp_path, 500, 100)
    assert server.answers == [500] * MAX_SERVER_ERRORS
    assert metrics.value("inferwatch_collector_rejected_items_total", {"kind": "traces"}) == 7
    assert metrics.value("inferwatch_collector_delivered_items_total", {"kind": "traces"}) == 0
