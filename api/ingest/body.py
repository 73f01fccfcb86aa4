"""Decoding OTLP/HTTP request bodies: content type, gzip, size limits, protobuf or JSON.

Per the OTLP/HTTP specification: `application/x-protobuf` or `application/json`, an
optional `Content-Encoding: gzip`, and JSON in which trace and span ids are hex strings
(not base64, unlike protobuf's canonical JSON mapping) and enums are integers.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from api.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

M = TypeVar("M", bound=Message)


class Encoding(Enum):
    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_decompressed_bytes: int


def encoding_of(content_type: str | None) -> Encoding:
    """The request encoding, from its Content-Type header (parameters ignored)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("application/x-protobuf", "application/protobuf"):
        return Encoding.PROTOBUF
    if media == "application/json":
        return Encoding.JSON
    raise UnsupportedMediaType(
        f"unsupported Content-Type {media or '(none)'!r}: send application/x-protobuf or application/json"
    )


def decompress(body: bytes, content_encoding: str | None, limits: Limits) -> bytes:
    """The body as sent, inflated if gzip/deflate, never past the decompressed limit."""
    if len(body) > limits.max_body_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {limits.max_body_bytes}")
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedMediaType(f"unsupported Content-Encoding {coding!r}: send gzip or none")
    inflater = zlib.decompressobj(wbits)
    try:
        # Inflate at most one byte past the limit, so a gzip bomb costs us no more than that.
        out = inflater.decompress(body, limits.max_decompressed_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid {coding}: {exc}") from exc
    if len(out) > limits.max_decompressed_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(
            f"request body inflates past the limit of {limits.max_decompressed_bytes} bytes"
        )
    if not inflater.eof:
        raise BadRequest(f"the {coding} body is truncated")
    return out


def parse(data: bytes, encoding: Encoding, message_type: type[M]) -> M:
    """Parse an Export*ServiceRequest from protobuf bytes or OTLP JSON."""
    message = message_type()
    if encoding is Encoding.PROTOBUF:
        try:
            message.ParseFromString(data)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise BadRequest(f"the body is not a valid protobuf {message_type.__name__}: {exc}") from exc
        return message
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("the JSON body is nested too deeply") from exc
    if not isinstance(document, dict):
        raise BadRequest("the JSON body must be an object")
    try:
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise BadRequest(f"the JSON body is not a valid {message_type.__name__}: {_short(exc)}") from exc
    return message


def check_count(count: int, limit: int, noun: str) -> None:
    """A request holding more items than `max_items_per_request` is refused whole."""
    if count > limit:
        raise BadRequest(f"the request holds {count} {noun}; the limit is {limit} per request")


def serialize(message: Message, encoding: Encoding) -> bytes:
    if encoding is Encoding.PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP JSON carries ids as hex; protobuf's JSON parser expects base64 for bytes.

    A malformed id becomes the empty id, which span validation then rejects with a reason,
    rather than failing the whole request.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode() if value else ""
                except ValueError:
                    node[key] = ""
            elif isinstance(value, dict | list):
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _hex_ids_to_base64(item)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
