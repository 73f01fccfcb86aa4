"""Delivery of one batch, retried like the OTLP exporter, against a real HTTP server that
answers from a script."""

from __future__ import annotations

import email.utils
import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector.export import OtlpHttpExporter, Outcome, parse_retry_after
from tests.conftest import free_port

BODY = gzip.compress(b"\x0a\x00", mtime=0)  # an empty ExportTraceServiceRequest with one empty ResourceSpans


class ScriptedServer(ThreadingHTTPServer):
    """Answers each POST with the next (status, headers, body) of ``script``; the last repeats."""

    daemon_threads = True

    def __init__(self, script: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.script = script
        self.received: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.received.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                status, headers, reply = server.script[min(len(server.received), len(server.script)) - 1]
                self.send_response(status)
                for key, value in {"Content-Length": str(len(reply)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def make(*script: tuple[int, dict[str, str], bytes]) -> ScriptedServer:
        servers.append(ScriptedServer(list(script)))
        return servers[-1]

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


OK = (200, {"Content-Type": "application/x-protobuf"}, b"")


def test_a_retryable_answer_is_retried_with_the_same_bytes_until_accepted(scripted: Any) -> None:
    server = scripted((503, {"Retry-After": "0"}, b""), (429, {"Retry-After": "0"}, b""), OK)
    result = OtlpHttpExporter(server.url, "s3cret", deadline_s=30).export("traces", BODY, threading.Event())
    assert (result.outcome, result.status) == (Outcome.DELIVERED, 200)
    assert [r["body"] for r in server.received] == [BODY, BODY, BODY]
    first = server.received[0]
    assert first["path"] == "/v1/traces"
    assert first["headers"]["Authorization"] == "Bearer s3cret"
    assert first["headers"]["Content-Encoding"] == "gzip"
    assert first["headers"]["Content-Type"] == "application/x-protobuf"


def test_a_bad_request_is_refused_for_good_without_a_retry(scripted: Any) -> None:
    server = scripted((400, {}, b"bad"), OK)
    result = OtlpHttpExporter(server.url, None, deadline_s=30).export("metrics", BODY, threading.Event())
    assert (result.outcome, result.status) == (Outcome.REJECTED, 400)
    assert len(server.received) == 1
    assert server.received[0]["path"] == "/v1/metrics"


@pytest.mark.parametrize("status", [401, 403, 404, 500])
def test_a_refusal_that_is_not_the_batchs_fault_keeps_it_for_later(scripted: Any, status: int) -> None:
    server = scripted((status, {}, b""), OK)
    result = OtlpHttpExporter(server.url, None, deadline_s=30).export("traces", BODY, threading.Event())
    assert (result.outcome, result.status) == (Outcome.RETRY_LATER, status)
    assert len(server.received) == 1  # not retried now: the spool keeps it


def test_no_retry_is_started_that_would_end_past_the_deadline(scripted: Any) -> None:
    server = scripted((503, {"Retry-After": "60"}, b""), OK)
    result = OtlpHttpExporter(server.url, None, deadline_s=5).export("traces", BODY, threading.Event())
    assert (result.outcome, result.status, result.retry_after_s) == (Outcome.RETRY_LATER, 503, 60.0)
    assert len(server.received) == 1


def test_shutdown_cuts_the_wait_between_retries_short(scripted: Any) -> None:
    server = scripted((502, {}, b""), OK)
    stopping = threading.Event()
    stopping.set()
    result = OtlpHttpExporter(server.url, None, deadline_s=30).export("traces", BODY, stopping)
    assert result.outcome is Outcome.RETRY_LATER
    assert len(server.received) == 1


def test_an_unreachable_server_is_a_retry_later_not_an_error() -> None:
    exporter = OtlpHttpExporter(f"http://127.0.0.1:{free_port()}", None, deadline_s=0.5)
    result = exporter.export("traces", BODY, threading.Event())
    assert (result.outcome, result.status) == (Outcome.RETRY_LATER, None)
    assert result.reason.startswith("connection")


def test_a_partial_success_reports_the_refused_items(scripted: Any) -> None:
    reply = ExportTraceServiceResponse()
    reply.partial_success.rejected_spans = 2
    reply.partial_success.error_message = "2 spans have no end time"
    server = scripted((200, {"Content-Type": "application/x-protobuf"}, reply.SerializeToString()))
    result = OtlpHttpExporter(server.url, None, deadline_s=5).export("traces", BODY, threading.Event())
    assert (result.outcome, result.rejected_items) == (Outcome.DELIVERED, 2)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = 1_764_000_000.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
