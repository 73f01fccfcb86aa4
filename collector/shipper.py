"""Sealing and sending: (relay) -> Spool <- (batcher) <- PayloadQueue; Spool -> (sender) -> server.

The relay appends what the engine sends straight to the spool (so it is on disk before the
engine is answered). GPU samples and scrapes, which nobody waits for, go through the bounded
in-memory queue; the batcher moves them into the spool the same way. The batcher also seals
the spool's segments into compressed batches every ``flush_interval`` (or at
``batch_max_bytes``). The sender delivers the spool's oldest batch, and only removes it once
the server has answered for it. Separate threads, so that a slow or absent server never stops
the queue draining.
"""

from __future__ import annotations

import logging
import threading
import time

from collector.export import RETRYABLE, ExportResult, OtlpHttpExporter, Outcome
from collector.queue import PayloadQueue
from collector.selfmetrics import CollectorMetrics
from collector.spool import Added, Spool, SpoolEntry

log = logging.getLogger(__name__)

# A batch the server keeps failing with a 5xx is dropped after this many tries, so that one
# poisonous batch cannot hold up the spool behind it for ever. Only 5xx the server does not
# call retryable count: 502/503/504 say "not now" (the store is down, a proxy is restarting),
# and dropping a batch for an outage would lose data the spool exists to keep.
MAX_SERVER_ERRORS = 5
PAUSE_MIN_S, PAUSE_MAX_S = 1.0, 30.0


class Shipper:
    def __init__(
        self,
        queue: PayloadQueue,
        spool: Spool,
        exporter: OtlpHttpExporter,
        metrics: CollectorMetrics,
        *,
        flush_interval_s: float,
        pause_max_s: float = PAUSE_MAX_S,
    ) -> None:
        self._queue = queue
        self._spool = spool
        self._exporter = exporter
        self._metrics = metrics
        self._flush_interval_s = flush_interval_s
        self._pause_max_s = pause_max_s  # longest pause between deliveries while the server is away
        self._stop_batching = threading.Event()
        self._stop_sending = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server_errors: dict[int, int] = {}  # spool seq -> 5xx answers so far
        self._announced_outage = False

    def start(self) -> None:
        self._spool.on_closed = self._queue.wake  # a full segment: seal it now, not when due
        for name, target in (("batcher", self._batch_loop), ("sender", self._send_loop)):
            thread = threading.Thread(target=target, name=f"inferwatch-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace_s: float) -> None:
        """Spool and seal what is queued, then keep sending for up to ``grace_s``; the rest
        stays spooled."""
        self._stop_batching.set()
        self._queue.close()
        if self._threads:
            self._threads[0].join()
        deadline = time.monotonic() + grace_s
        while len(self._spool) and time.monotonic() < deadline and self._threads[1].is_alive():
            time.sleep(0.05)
        self._stop_sending.set()
        self._spool.wake()
        for thread in self._threads[1:]:
            thread.join()
        self._threads.clear()
        if len(self._spool):
            log.info("stopping with %d batch(es) not yet delivered; they stay in the spool", len(self._spool))

    # --- batcher -------------------------------------------------------------------------

    def _batch_loop(self) -> None:
        wait = 0.0
        while True:
            payload = self._queue.get(timeout=wait)  # woken early when a segment fills
            self._metrics.queue_bytes.set(self._queue.size_bytes)
            if payload is not None:
                added = self._spool.add(payload.kind, payload.items, payload.body)
                if added is not Added.KEPT:  # nobody to refuse it to: dropped, and counted
                    self._metrics.spool_dropped_batches.labels(added.value).inc()
                    self._metrics.spool_dropped_items.labels(payload.kind, added.value).inc(payload.items)
            stopping = self._stop_batching.is_set() and payload is None
            wait = self._spool.seal(self._flush_interval_s, force=stopping)
            if stopping:
                return

    # --- sender --------------------------------------------------------------------------

    def _send_loop(self) -> None:
        pause = min(PAUSE_MIN_S, self._pause_max_s)
        while not self._stop_sending.is_set():
            found = self._spool.next(timeout=0.5)
            if found is None:
                continue
            entry, body = found
            result = self._exporter.export(entry.kind, body, self._stop_sending)
            if self._settle(entry, result):
                pause = min(PAUSE_MIN_S, self._pause_max_s)
                continue
            self._stop_sending.wait(result.retry_after_s if result.retry_after_s is not None else pause)
            pause = min(pause * 2, self._pause_max_s)

    def _settle(self, entry: SpoolEntry, result: ExportResult) -> bool:
        """Account for one export; True when the batch left the spool."""
        m = self._metrics
        if result.outcome is Outcome.DELIVERED:
            self._spool.done(entry)
            self._server_errors.pop(entry.seq, None)
            m.delivered_batches.labels(entry.kind).inc()
            m.delivered_items.labels(entry.kind).inc(entry.items - result.rejected_items)
            if result.rejected_items:
                m.rejected_items.labels(entry.kind).inc(result.rejected_items)
            if self._announced_outage:
                self._announced_outage = False
                log.info("server reachable again; delivering the spool (%d batch(es))", len(self._spool))
            return True
        m.export_failures.labels(str(result.status or "connection")).inc()
        poison = (result.status or 0) >= 500 and result.status not in RETRYABLE
        errors = self._server_errors.get(entry.seq, 0) + 1 if poison else 0
        if result.outcome is Outcome.REJECTED or errors >= MAX_SERVER_ERRORS:
            log.warning(
                "server refused a %s batch of %d item(s) for good (%s); it is dropped",
                entry.kind,
                entry.items,
                result.reason,
            )
            self._spool.done(entry)
            self._server_errors.pop(entry.seq, None)
            m.rejected_items.labels(entry.kind).inc(entry.items)
            return True
        self._server_errors[entry.seq] = errors
        self._spool.release(entry)
        if not self._announced_outage:
            self._announced_outage = True
            log.warning("cannot deliver to the server (%s); spooling until it answers", result.reason)
        return False
