"""The bounded in-memory queue between producers (relay, samplers, scrapers) and the batcher.

``put`` never blocks: a producer is answered at once, and a payload that does not fit is
dropped and counted. That is what keeps the engine's exporter from ever waiting on us.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Payload:
    """One serialized OTLP export request. ``kind`` is ``traces`` or ``metrics``."""

    kind: str
    body: bytes  # an uncompressed ExportTraceServiceRequest / ExportMetricsServiceRequest
    items: int  # spans, GPU samples or data points inside, for the counters
    source: str = "relay"


class PayloadQueue:
    """FIFO bounded by the total size of the bodies it holds."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._items: deque[Payload] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._woken = False

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def put(self, payload: Payload) -> bool:
        """Queue ``payload`` unless it would exceed the bound; never waits."""
        with self._cond:
            if self._bytes + len(payload.body) > self._max_bytes:
                return False
            self._items.append(payload)
            self._bytes += len(payload.body)
            self._cond.notify()
            return True

    def get(self, timeout: float) -> Payload | None:
        """The oldest payload, waiting up to ``timeout`` seconds for one (not at all once closing)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing or self._woken:
                    self._woken = False
                    return None
                self._cond.wait(remaining)
            payload = self._items.popleft()
            self._bytes -= len(payload.body)
            return payload

    def wake(self) -> None:
        """Make a waiting (or the next) ``get`` return at once, with None if nothing is queued."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def close(self) -> None:
        """Shutdown: ``get`` stops waiting; what is queued can still be taken."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
