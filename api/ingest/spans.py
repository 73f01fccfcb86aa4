"""Decoded spans and resources: the shapes convention modules read.

Attributes are decoded once per span into a plain dict, which is where most of the
ingest time goes; everything downstream reads the dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue


class Rejected(Exception):  # noqa: N818 — a verdict, not a failure
    """A span or data point that cannot be stored, with the reason the sender is told."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Span:
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attrs: dict[str, Any]
    status_code: int
    status_message: str
    children: list[Span] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(slots=True)
class Resource:
    cluster: str
    host: str
    deployment: str
    model: str
    instance: str
    gpu_uuids: list[str]
    named_deployment: str = ""
    """The deployment only if the sender named one (not guessed from service.name): GPU
    samples use this, so a collector's own service name never becomes a deployment."""


_PLAIN = frozenset({"int_value", "double_value", "bool_value"})
"""AnyValue kinds read as they are (strings are truncated, the rest converted)."""


class AttributeDecoder:
    """Turns OTLP KeyValue lists into dicts, truncating long strings (and counting them)."""

    __slots__ = ("_by_first", "_last", "max_bytes", "truncated")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.truncated = 0
        self._last: tuple[Any, dict[str, Any], int] | None = None  # as in _by_first
        self._by_first: dict[str, list[tuple[Any, dict[str, Any], int]]] = {}

    def decode_shared(self, kvs: Any) -> dict[str, Any]:
        """`decode`, reusing an earlier result for equal attributes (protobuf compares them in
        C). Metric points repeat attribute sets: one series' points share the previous call's;
        a GPU field's points cycle through every GPU of the host (`gpu.uuid` first), found by
        the first attribute's string value. Bounded: 4 sets per first value, 4,096 first
        values. Cut-short values are counted on every use. Do not mutate the result."""
        if not kvs:
            return {}
        entry = self._last
        if entry is None or kvs != entry[0]:
            first = kvs[0].value.string_value
            sets = self._by_first.get(first)
            entry = next((e for e in sets if kvs == e[0]), None) if sets is not None else None
            if entry is None:
                entry = (kvs, *self.decode_apart(kvs))
                if sets is None:
                    if len(self._by_first) < 4096:
                        self._by_first[first] = [entry]
                elif len(sets) < 4:
                    sets.append(entry)
            self._last = entry
        self.truncated += entry[2]
        return entry[1]

    def decode_apart(self, kvs: Any) -> tuple[dict[str, Any], int]:
        """`decode`, and how many values it cut short, not counted on this decoder (for a
        caller that counts them once per use of a result it keeps)."""
        before = self.truncated
        decoded = self.decode(kvs)
        cut, self.truncated = self.truncated - before, before
        return decoded, cut

    def decode(self, kvs: Any) -> dict[str, Any]:
        # The hot loop of ingest: one WhichOneof per value, plain scalars read inline.
        out: dict[str, Any] = {}
        max_bytes = self.max_bytes
        for kv in kvs:
            value = kv.value
            which = value.WhichOneof("value")
            if which == "string_value":
                text = value.string_value
                if len(text) > max_bytes:
                    text = text[:max_bytes]
                    self.truncated += 1
                out[kv.key] = text
            elif which in _PLAIN:
                out[kv.key] = getattr(value, which)
            elif which == "array_value":
                out[kv.key] = [self._scalar(item) for item in value.array_value.values]
            elif which is not None:
                out[kv.key] = self._scalar(value)
        return out

    def _scalar(self, value: AnyValue) -> Any:
        which = value.WhichOneof("value")
        if which is None:
            return None
        if which == "kvlist_value":
            return self.decode(value.kvlist_value.values)
        if which == "array_value":
            return [self._scalar(item) for item in value.array_value.values]
        if which == "bytes_value":
            return value.bytes_value.hex()
        result = getattr(value, which)
        if which == "string_value" and len(result) > self.max_bytes:
            self.truncated += 1
            return result[: self.max_bytes]
        return result


def resource_of(attrs: dict[str, Any]) -> Resource:
    """Who sent this: the resource attributes docs/telemetry.md defines, with fallbacks."""
    gpus = attrs.get("inferwatch.gpu.uuids") or []
    if isinstance(gpus, str):
        gpus = [g for g in gpus.split(",") if g]
    elif not isinstance(gpus, list):
        gpus = [gpus]
    return Resource(
        cluster=_text(attrs.get("inferwatch.cluster")) or "default",
        host=_text(attrs.get("host.name")) or _text(attrs.get("k8s.node.name")) or "unknown",
        deployment=_text(attrs.get("inferwatch.deployment"))
        or _text(attrs.get("k8s.deployment.name"))
        or _text(attrs.get("service.name"))
        or "unknown",
        model=_text(attrs.get("inferwatch.model")),
        instance=_text(attrs.get("inferwatch.instance"))
        or _text(attrs.get("k8s.pod.name"))
        or _text(attrs.get("service.instance.id")),
        gpu_uuids=[str(g) for g in gpus if g],
        named_deployment=_text(attrs.get("inferwatch.deployment")) or _text(attrs.get("k8s.deployment.name")),
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)
