"""The OTLP/HTTP receiver the engine exports to (``/v1/traces``, also ``/v1/metrics``).

A request is decoded (protobuf or JSON, optionally gzip), each resource gets the collector's
attributes where it lacks them, and the re-encoded request is appended to the spool on disk.
The engine is answered once it is written there: 200 then, so an acknowledged span survives the
collector being killed; 503 with ``Retry-After`` when the spool cannot take it (its disk is full
or failing), so the engine's exporter keeps it and retries instead of it being lost here; 413 for
a request larger than the whole spool; 4xx for input that can't be read. Nothing here waits on
the inferwatch server.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector.identity import Identity
from collector.otlp import add_missing_attributes
from collector.promconv import count_points
from collector.selfmetrics import CollectorMetrics
from collector.spool import Added, Spool
from collector.wire import varint

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 2**20  # before and after decompression
RETRY_AFTER_S = 5  # asked of the engine when the spool cannot take its request
_ROUTES = {"/v1/traces": "traces", "/v1/metrics": "metrics"}
_ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


class BadRequest(Exception):
    """Input the relay can't use; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Reply:
    __slots__ = ("status", "content_type", "body", "headers")

    def __init__(
        self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.status, self.content_type, self.body = status, content_type, body
        self.headers = headers or {}


class OtlpReceiver:
    """Turns one HTTP request into a spool record and a reply. No sockets: see ``RelayServer``."""

    def __init__(
        self,
        identity: Identity,
        spool: Spool,
        metrics: CollectorMetrics,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._identity = identity
        self._spool = spool
        self._metrics = metrics
        self._max = max_body_bytes

    @property
    def max_body_bytes(self) -> int:
        return self._max

    def handle(self, path: str, content_type: str, content_encoding: str, body: bytes) -> Reply:
        kind = _ROUTES.get(path.split("?", 1)[0])
        as_json = content_type.split(";")[0].strip().lower() == "application/json"
        if kind is None:
            return self._reply(path, _error_reply(404, f"no OTLP endpoint at {path}", as_json))
        try:
            request = self._decode(kind, content_type, content_encoding, body)
        except BadRequest as exc:
            return self._reply(path, _error_reply(exc.status, str(exc), as_json))
        items = self._enrich(kind, request)
        added = self._spool.add(kind, items, request.SerializeToString())
        if added is Added.KEPT:
            self._metrics.received_items.labels(kind, "relay").inc(items)
            return self._reply(path, _success_reply(kind, as_json))
        self._metrics.relay_refused_items.labels(kind, added.value).inc(items)
        if added is Added.TOO_LARGE:
            return self._reply(path, _error_reply(413, "request larger than the collector's spool", as_json))
        reply = _error_reply(
            503,
            f"the collector cannot keep this request now ({added.value}: its spool "
            f"{'disk is full or failing' if added is Added.WRITE_ERROR else 'is full'}); retry later",
            as_json,
        )
        reply.headers["Retry-After"] = str(RETRY_AFTER_S)
        return self._reply(path, reply)

    def _reply(self, path: str, reply: Reply) -> Reply:
        self._metrics.relay_requests.labels(path if path in _ROUTES else "other", str(reply.status)).inc()
        return reply

    def _decode(self, kind: str, content_type: str, content_encoding: str, body: bytes) -> Message:
        if len(body) > self._max:
            raise BadRequest(413, f"body larger than {self._max} bytes")
        encoding = content_encoding.strip().lower()
        if encoding == "gzip":
            body = _gunzip(body, self._max)
        elif encoding not in ("", "identity"):
            raise BadRequest(415, f"unsupported Content-Encoding {content_encoding!r} (use gzip or none)")
        message: Message = ExportTraceServiceRequest() if kind == "traces" else ExportMetricsServiceRequest()
        mime = content_type.split(";")[0].strip().lower()
        try:
            if mime in ("application/x-protobuf", "application/protobuf"):
                message.ParseFromString(body)
            elif mime == "application/json":
                json_format.ParseDict(_ids_to_base64(json.loads(body)), message, ignore_unknown_fields=True)
            else:
                raise BadRequest(
                    415,
                    f"unsupported Content-Type {content_type!r} "
                    "(use application/x-protobuf or application/json)",
                )
        except (DecodeError, json_format.ParseError, ValueError, TypeError) as exc:
            raise BadRequest(400, f"cannot decode the OTLP request: {exc}") from None
        except RecursionError:  # JSON nested deeper than any OTLP message (json.loads, ParseDict)
            raise BadRequest(400, "cannot decode the OTLP request: JSON nested too deeply") from None
        return message

    def _enrich(self, kind: str, request: Any) -> int:
        attrs = self._identity.span_attributes()
        if kind == "traces":
            count = 0
            for rs in request.resource_spans:
                add_missing_attributes(rs.resource, attrs)
                count += sum(len(ss.spans) for ss in rs.scope_spans)
            return count
        count = 0
        for rm in request.resource_metrics:
            add_missing_attributes(rm.resource, attrs)
            count += sum(count_points(sm.metrics) for sm in rm.scope_metrics)
        return count


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(400, f"bad gzip body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BadRequest(413, f"body larger than {limit} bytes once decompressed")
    return out


def _ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping expects base64."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and value:
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise BadRequest(400, f"{key} {value!r} is not hex") from None
            out[key] = _ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_ids_to_base64(v) for v in node]
    return node


def _success_reply(kind: str, as_json: bool) -> Reply:
    response: Message = ExportTraceServiceResponse() if kind == "traces" else ExportMetricsServiceResponse()
    if as_json:
        return Reply(200, "application/json", json_format.MessageToJson(response).encode())
    return Reply(200, "application/x-protobuf", response.SerializeToString())


def _error_reply(status: int, message: str, as_json: bool) -> Reply:
    # google.rpc.Status {int32 code = 1; string message = 2}, encoded by hand to spare a dependency.
    if as_json:
        return Reply(status, "application/json", json.dumps({"code": status, "message": message}).encode())
    text = message.encode()
    return Reply(
        status, "application/x-protobuf", b"\x08" + varint(status) + b"\x12" + varint(len(text)) + text
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse one connection
    server: RelayServer

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send(Reply(411, "text/plain", b"Content-Length required"), close=True)
            return
        size = int(length)
        receiver = self.server.receiver
        if size > receiver.max_body_bytes:
            self._send(_error_reply(413, "body too large", False), close=True)
            return
        body = self.rfile.read(size)
        reply = receiver.handle(
            self.path, self.headers.get("Content-Type", ""), self.headers.get("Content-Encoding", ""), body
        )
        self._send(reply)

    def do_GET(self) -> None:  # noqa: N802
        self._send(Reply(405, "text/plain", b"POST OTLP to /v1/traces or /v1/metrics"))

    def _send(self, reply: Reply, close: bool = False) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("relay: %s", format % args)


class RelayServer(ThreadingHTTPServer):
    """The receiver on a socket, one thread per connection, served from a daemon thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, receiver: OtlpReceiver) -> None:
        super().__init__((host, port), _Handler)
        self.receiver = receiver
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="inferwatch-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()
