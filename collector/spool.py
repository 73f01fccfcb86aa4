"""The outbox: compressed batches waiting for the server, oldest first, bounded by bytes.

Every batch goes through the spool, so one path serves the server being up, down, or the
collector restarting: the sender always delivers the oldest batch, and the bytes it sends on
a retry are the very bytes first written (the server deduplicates identical batches). Past the
bound, the oldest batches are dropped and counted; the one being sent is never dropped.

``DiskSpool`` keeps each batch in a file named ``<seq>.<kind>.<items>.otlp.gz`` (written to a
temporary name, then renamed, so a crash never leaves half a batch under a real name).
``MemorySpool`` is the fallback when the directory cannot be used.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from collector.selfmetrics import CollectorMetrics

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{16})\.(traces|metrics)\.(\d+)\.otlp\.gz$")


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    seq: int
    kind: str  # traces | metrics
    items: int
    size: int  # bytes, compressed


class Spool:
    """Ordering, bounds, waiting and counting; subclasses store the bytes."""

    def __init__(self, max_bytes: int, metrics: CollectorMetrics) -> None:
        self._max_bytes = max_bytes
        self._metrics = metrics
        self._entries: list[SpoolEntry] = []
        self._bytes = 0
        self._next_seq = 1
        self._in_flight: int | None = None
        self._cond = threading.Condition()
        self._warned_full = False

    # --- storage hooks -------------------------------------------------------------------

    def _store(self, entry: SpoolEntry, body: bytes) -> None:
        raise NotImplementedError

    def _load(self, entry: SpoolEntry) -> bytes:
        raise NotImplementedError

    def _delete(self, entry: SpoolEntry) -> None:
        raise NotImplementedError

    # --- the outbox ----------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[SpoolEntry]:
        with self._cond:
            return list(self._entries)

    def append(self, kind: str, items: int, body: bytes) -> bool:
        """Add a batch at the end; drop the oldest batches to make room. False if not kept."""
        with self._cond:
            entry = SpoolEntry(self._next_seq, kind, items, len(body))
            if entry.size > self._max_bytes:
                self._count_drop(entry, "too_large")
                return False
            self._make_room(entry.size)
            if self._bytes + entry.size > self._max_bytes:  # only the batch in flight is left
                self._count_drop(entry, "full")
                return False
            try:
                self._store(entry, body)
            except OSError as exc:
                log.warning("spool: cannot write a batch (%s); it is dropped", exc)
                self._count_drop(entry, "write_error")
                return False
            self._next_seq += 1
            self._entries.append(entry)
            self._bytes += entry.size
            self._metrics.spooled_batches.labels(kind).inc()
            self._publish()
            self._cond.notify_all()
            return True

    def next(self, timeout: float) -> tuple[SpoolEntry, bytes] | None:
        """The oldest batch and its bytes, marked in flight; waits up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while not self._entries:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
                entry = self._entries[0]
                try:
                    body = self._load(entry)
                except OSError as exc:
                    log.warning("spool: cannot read batch %d (%s); it is dropped", entry.seq, exc)
                    self._forget(entry)
                    self._count_drop(entry, "read_error")
                    continue
                self._in_flight = entry.seq
                return entry, body

    def done(self, entry: SpoolEntry) -> None:
        """The batch was delivered (or refused for good): remove it."""
        with self._cond:
            self._in_flight = None
            if entry in self._entries:
                self._forget(entry)

    def release(self, entry: SpoolEntry) -> None:
        """The batch stays for a later attempt (and may now be dropped to make room)."""
        with self._cond:
            if self._in_flight == entry.seq:
                self._in_flight = None

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # --- internals (hold the lock) -------------------------------------------------------

    def _make_room(self, size: int) -> None:
        victims = [e for e in self._entries if e.seq != self._in_flight]
        dropped = 0
        while self._bytes + size > self._max_bytes and victims:
            victim = victims.pop(0)
            self._forget(victim)
            self._count_drop(victim, "full")
            dropped += 1
        if dropped and not self._warned_full:
            self._warned_full = True
            log.warning(
                "spool is full (%d bytes): dropping the oldest batches; see "
                "inferwatch_collector_spool_dropped_batches_total",
                self._max_bytes,
            )
        elif not dropped and self._bytes + size <= self._max_bytes // 2:
            self._warned_full = False  # warn again at the next episode

    def _forget(self, entry: SpoolEntry) -> None:
        try:
            self._delete(entry)
        except OSError as exc:
            log.warning("spool: cannot remove batch %d (%s)", entry.seq, exc)
        self._entries.remove(entry)
        self._bytes -= entry.size
        self._publish()

    def _count_drop(self, entry: SpoolEntry, reason: str) -> None:
        self._metrics.spool_dropped_batches.labels(reason).inc()
        self._metrics.spool_dropped_items.labels(entry.kind, reason).inc(entry.items)

    def _publish(self) -> None:
        self._metrics.spool_bytes.set(self._bytes)
        self._metrics.spool_batches.set(len(self._entries))


class MemorySpool(Spool):
    """Batches in memory: lost on restart. Used when no spool directory is usable."""

    def __init__(self, max_bytes: int, metrics: CollectorMetrics) -> None:
        super().__init__(max_bytes, metrics)
        self._bodies: dict[int, bytes] = {}

    def _store(self, entry: SpoolEntry, body: bytes) -> None:
        self._bodies[entry.seq] = body

    def _load(self, entry: SpoolEntry) -> bytes:
        return self._bodies[entry.seq]

    def _delete(self, entry: SpoolEntry) -> None:
        self._bodies.pop(entry.seq, None)


class DiskSpool(Spool):
    """Batches as files in ``directory``; what a previous run left there is delivered first."""

    def __init__(self, directory: Path, max_bytes: int, metrics: CollectorMetrics) -> None:
        super().__init__(max_bytes, metrics)
        self._dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        found = []
        for path in directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append(SpoolEntry(int(match[1]), match[2], int(match[3]), path.stat().st_size))
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a write cut short by a crash
        found.sort(key=lambda e: e.seq)
        self._entries = found
        self._bytes = sum(e.size for e in found)
        self._next_seq = found[-1].seq + 1 if found else 1
        self._publish()
        if found:
            log.info(
                "spool: %d batch(es), %d bytes left by a previous run will be delivered first",
                len(found),
                self._bytes,
            )

    def _path(self, entry: SpoolEntry) -> Path:
        return self._dir / f"{entry.seq:016d}.{entry.kind}.{entry.items}.otlp.gz"

    def _store(self, entry: SpoolEntry, body: bytes) -> None:
        final = self._path(entry)
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
            os.replace(tmp, final)
        except OSError:
            tmp.unlink(missing_ok=True)  # a disk-full write leaves half a file that only takes room
            raise

    def _load(self, entry: SpoolEntry) -> bytes:
        return self._path(entry).read_bytes()

    def _delete(self, entry: SpoolEntry) -> None:
        self._path(entry).unlink(missing_ok=True)


def open_spool(directory: Path, max_bytes: int, metrics: CollectorMetrics) -> Spool:
    """A DiskSpool in ``directory``, or a MemorySpool (with one warning) if it can't be used."""
    try:
        spool = DiskSpool(directory, max_bytes, metrics)
        probe = directory / ".probe.tmp"
        probe.write_bytes(b"")
        probe.unlink()
        return spool
    except OSError as exc:
        log.warning(
            "spool directory %s is unusable (%s): spooling in memory, so batches not yet "
            "delivered are lost if the collector stops",
            directory,
            exc,
        )
        return MemorySpool(max_bytes, metrics)
