"""The outbox: what the collector has taken in and not yet delivered, on disk, oldest first,
bounded by bytes.

Two stages, both on disk:

* **Segments.** ``add`` appends one record (an uncompressed OTLP export request) to the open
  segment of its kind and returns once the bytes are written to the file (``write(2)`` done, so
  in the kernel's page cache: a killed process loses nothing ``add`` returned for). The relay
  acknowledges an engine's export only after ``add`` returned, so an acknowledged span is
  always in a file. Records are length-prefixed with a CRC, so a write cut short by a crash is
  recognised and left out when the segment is read back.
* **Batches.** ``seal`` turns a segment (once ``--flush-interval`` old, or ``batch_max_bytes``
  large) into one gzip-compressed batch, ``<seq>.<kind>.<items>.otlp.gz``, written under a
  temporary name and renamed, then deletes the segment. A batch keeps its segment's sequence
  number, so a crash between the two leaves a segment whose batch exists, and it is simply
  deleted on the next start; a segment without its batch is sealed on the next start.

The sender delivers the oldest batch, and the bytes it sends on a retry are the very bytes
first written (the server deduplicates identical batches). Past the bound, the oldest batches
are dropped and counted; the one being sent is never dropped. When a record cannot be written
(disk full), ``add`` says so and the caller refuses the data (the relay answers 503), rather than
acknowledging what it does not hold.

``DiskSpool`` keeps the files in a directory; ``MemorySpool`` is the fallback when the
directory cannot be used (nothing then survives a restart).
"""

from __future__ import annotations

import bisect
import enum
import gzip
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from collector.selfmetrics import CollectorMetrics

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{16})\.(traces|metrics)\.(\d+)\.otlp\.gz$")
_SEGMENT = re.compile(r"^(\d{16})\.(traces|metrics)\.seg$")
_RECORD = struct.Struct("<III")  # body length, items, crc32(body)
BATCH_MAX_BYTES = 4 * 2**20


class Added(enum.Enum):
    """What ``Spool.add`` did with a record."""

    KEPT = "kept"
    FULL = "full"  # no room even after dropping every batch that may be dropped
    TOO_LARGE = "too_large"  # larger than the whole spool
    WRITE_ERROR = "write_error"  # the file could not be written (disk full, I/O error)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    seq: int
    kind: str  # traces | metrics
    items: int
    size: int  # bytes, compressed


@dataclass(slots=True)
class Segment:
    """Records of one kind not yet sealed into a batch. ``size`` counts the good bytes only."""

    seq: int
    kind: str
    opened: float  # time.monotonic() of the first record
    size: int = 0
    items: int = 0
    handle: object = field(default=None)  # the storage's (a file descriptor, a bytearray)


def encode_record(body: bytes, items: int) -> bytes:
    return _RECORD.pack(len(body), items, zlib.crc32(body)) + body


def decode_records(data: bytes) -> tuple[list[bytes], int, int]:
    """The bodies in a segment's bytes, their items, and how many bytes were good: reading stops
    at the first record that is cut short or does not match its CRC (a crash mid-write)."""
    bodies, items, at = [], 0, 0
    while at + _RECORD.size <= len(data):
        length, count, crc = _RECORD.unpack_from(data, at)
        body = data[at + _RECORD.size : at + _RECORD.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        bodies.append(body)
        items += count
        at += _RECORD.size + length
    return bodies, items, at


def compress(bodies: list[bytes]) -> bytes:
    """One batch from the records of a segment. OTLP export requests concatenate into a valid
    request (their only field is a repeated one). mtime=0: the same records always compress to
    the same bytes. Level 1: OTLP (random ids) compresses no better at 6, at half the speed."""
    return gzip.compress(b"".join(bodies), compresslevel=1, mtime=0)


class Spool:
    """Ordering, bounds, waiting and counting; subclasses store the bytes."""

    def __init__(
        self, max_bytes: int, metrics: CollectorMetrics, batch_max_bytes: int = BATCH_MAX_BYTES
    ) -> None:
        self._max_bytes = max_bytes
        self._batch_max_bytes = batch_max_bytes
        self._metrics = metrics
        self._entries: list[SpoolEntry] = []  # sealed batches, by seq
        self._open: dict[str, Segment] = {}  # kind -> the segment records go to
        self._closed: list[Segment] = []  # full or old segments waiting for ``seal``
        self._bytes = 0  # batches (compressed) + segments (uncompressed)
        self._next_seq = 1
        self._in_flight: int | None = None
        self._cond = threading.Condition()
        self._warned_full = False
        self._warned_write = False
        self.on_closed: Callable[[], None] | None = None  # told when a segment is ready to seal

    # --- storage hooks -------------------------------------------------------------------

    def _store(self, entry: SpoolEntry, body: bytes) -> None:
        raise NotImplementedError

    def _load(self, entry: SpoolEntry) -> bytes:
        raise NotImplementedError

    def _delete(self, entry: SpoolEntry) -> None:
        raise NotImplementedError

    def _segment_open(self, segment: Segment) -> None:
        raise NotImplementedError

    def _segment_write(self, segment: Segment, record: bytes) -> None:
        """Append ``record``; on failure leave the segment at ``segment.size`` bytes if possible."""
        raise NotImplementedError

    def _segment_close(self, segment: Segment) -> None:
        raise NotImplementedError

    def _segment_read(self, segment: Segment) -> bytes:
        raise NotImplementedError

    def _segment_delete(self, segment: Segment) -> None:
        raise NotImplementedError

    # --- the outbox ----------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        """Batches and segments not yet delivered."""
        return len(self._entries) + len(self._open) + len(self._closed)

    def entries(self) -> list[SpoolEntry]:
        with self._cond:
            return list(self._entries)

    def add(self, kind: str, items: int, body: bytes) -> Added:
        """Append one record (an uncompressed OTLP request) to the open segment of ``kind``;
        returns once it is written. Drops the oldest batches to make room. A record not kept is
        the caller's to count (the relay refuses it, the batcher drops it)."""
        record = encode_record(body, items)
        with self._cond:
            if len(record) > self._max_bytes:
                return Added.TOO_LARGE
            self._make_room(len(record))
            if self._bytes + len(record) > self._max_bytes:
                return Added.FULL
            segment = self._open.get(kind)
            if segment is not None and segment.size and segment.size + len(record) > self._batch_max_bytes:
                self._close(segment)
                self._tell_closed()
                segment = None
            try:
                if segment is None:
                    segment = Segment(self._next_seq, kind, time.monotonic())
                    self._segment_open(segment)
                    self._next_seq += 1
                    self._open[kind] = segment
                self._segment_write(segment, record)
            except OSError as exc:
                if not self._warned_write:
                    self._warned_write = True
                    log.warning("spool: cannot write (%s); refusing data until it can", exc)
                if segment is not None and kind in self._open:
                    self._close(segment)  # never append after a failed write: seal what is good
                    self._tell_closed()
                return Added.WRITE_ERROR
            self._warned_write = False
            segment.size += len(record)
            segment.items += items
            self._bytes += len(record)
            self._publish()
            return Added.KEPT

    def seal(self, max_age_s: float, force: bool = False) -> float:
        """Turn closed segments, open ones at least ``max_age_s`` old (all, with ``force``),
        into batches. Returns the seconds until the next one is due (for the caller's wait).
        One caller at a time (the batcher thread)."""
        now = time.monotonic()
        with self._cond:
            for segment in list(self._open.values()):
                if force or now - segment.opened >= max_age_s:
                    self._close(segment)
            todo = list(self._closed)
        for segment in todo:
            self._seal_one(segment)
        with self._cond:
            if self._closed:
                return 0.5  # a batch could not be written: try again shortly
            due = [s.opened + max_age_s - now for s in self._open.values()]
            return max(0.0, min(due, default=max_age_s))

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

    # --- sealing -------------------------------------------------------------------------

    def _seal_one(self, segment: Segment) -> None:
        """Outside the lock: the segment is closed, nothing else touches it."""
        try:
            data = self._segment_read(segment)
        except OSError as exc:
            log.warning("spool: cannot read segment %d (%s); its records are dropped", segment.seq, exc)
            self._discard(segment, "read_error")
            return
        bodies, items, _ = decode_records(data[: segment.size])
        entry = SpoolEntry(segment.seq, segment.kind, items, 0)
        if bodies:
            batch = compress(bodies)
            entry = SpoolEntry(segment.seq, segment.kind, items, len(batch))
            if not self._store_making_room(entry, batch):
                return  # stays closed; ``seal`` tries again
        with self._cond:
            self._closed.remove(segment)
            self._bytes -= segment.size
            if bodies:
                self._insert(entry)
            else:
                self._publish()
        try:
            self._segment_delete(segment)
        except OSError as exc:  # the next start finds its batch and deletes it then
            log.warning("spool: cannot remove segment %d (%s)", segment.seq, exc)

    def _store_making_room(self, entry: SpoolEntry, batch: bytes) -> bool:
        """Write a sealed batch. If the disk is full, the oldest batches make room for it (their
        data is older; this one's was acknowledged too): dropped and counted, never the one in
        flight. False when even that does not help (nothing left to drop)."""
        while True:
            try:
                self._store(entry, batch)
                return True
            except OSError as exc:
                with self._cond:
                    victims = [e for e in self._entries if e.seq != self._in_flight]
                    if not victims:
                        if not self._warned_write:
                            self._warned_write = True
                            log.warning("spool: cannot write batch %d (%s); will try again", entry.seq, exc)
                        return False
                    self._forget(victims[0])
                    self._count_drop(victims[0], "disk_full")
                    self._warn_full()

    def _discard(self, segment: Segment, reason: str) -> None:
        with self._cond:
            self._closed.remove(segment)
            self._bytes -= segment.size
            self._count_drop(SpoolEntry(segment.seq, segment.kind, segment.items, 0), reason)
            self._publish()

    # --- internals (hold the lock) -------------------------------------------------------

    def _close(self, segment: Segment) -> None:
        del self._open[segment.kind]
        try:
            self._segment_close(segment)
        except OSError:
            pass
        self._closed.append(segment)

    def _tell_closed(self) -> None:
        if self.on_closed is not None:
            self.on_closed()

    def _insert(self, entry: SpoolEntry) -> None:
        bisect.insort(self._entries, entry, key=lambda e: e.seq)
        self._bytes += entry.size
        self._metrics.spooled_batches.labels(entry.kind).inc()
        self._publish()
        self._cond.notify_all()

    def _make_room(self, size: int) -> None:
        if self._bytes + size <= self._max_bytes:  # the common case: no list of victims to build
            if self._bytes + size <= self._max_bytes // 2:
                self._warned_full = False  # warn again at the next episode
            return
        victims = [e for e in self._entries if e.seq != self._in_flight]
        dropped = 0
        while self._bytes + size > self._max_bytes and victims:
            victim = victims.pop(0)
            self._forget(victim)
            self._count_drop(victim, "full")
            dropped += 1
        if dropped:
            self._warn_full()

    def _warn_full(self) -> None:
        if not self._warned_full:
            self._warned_full = True
            log.warning(
                "spool is full (%d bytes, or its disk is): dropping the oldest batches; see "
                "inferwatch_collector_spool_dropped_batches_total",
                self._max_bytes,
            )

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

    def __init__(
        self, max_bytes: int, metrics: CollectorMetrics, batch_max_bytes: int = BATCH_MAX_BYTES
    ) -> None:
        super().__init__(max_bytes, metrics, batch_max_bytes)
        self._bodies: dict[int, bytes] = {}

    def _store(self, entry: SpoolEntry, body: bytes) -> None:
        self._bodies[entry.seq] = body

    def _load(self, entry: SpoolEntry) -> bytes:
        return self._bodies[entry.seq]

    def _delete(self, entry: SpoolEntry) -> None:
        self._bodies.pop(entry.seq, None)

    def _segment_open(self, segment: Segment) -> None:
        segment.handle = bytearray()

    def _segment_write(self, segment: Segment, record: bytes) -> None:
        assert isinstance(segment.handle, bytearray)
        segment.handle += record

    def _segment_close(self, segment: Segment) -> None:
        pass

    def _segment_read(self, segment: Segment) -> bytes:
        assert isinstance(segment.handle, bytearray)
        return bytes(segment.handle)

    def _segment_delete(self, segment: Segment) -> None:
        segment.handle = None


class DiskSpool(Spool):
    """Batches and segments as files in ``directory``; what a previous run left there (segments
    are sealed first) is delivered first."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        metrics: CollectorMetrics,
        batch_max_bytes: int = BATCH_MAX_BYTES,
    ) -> None:
        super().__init__(max_bytes, metrics, batch_max_bytes)
        self._dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        found, segments = [], []
        for path in directory.iterdir():
            if match := _NAME.match(path.name):
                found.append(SpoolEntry(int(match[1]), match[2], int(match[3]), path.stat().st_size))
            elif match := _SEGMENT.match(path.name):
                segments.append(Segment(int(match[1]), match[2], 0.0, path.stat().st_size))
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a write cut short by a crash
        found.sort(key=lambda e: e.seq)
        self._entries = found
        self._bytes = sum(e.size for e in found)
        seqs = [e.seq for e in found] + [s.seq for s in segments]
        self._next_seq = max(seqs) + 1 if seqs else 1
        sealed = {e.seq for e in found}
        for segment in sorted(segments, key=lambda s: s.seq):
            if segment.seq in sealed:  # sealed, then the crash came before the segment was removed
                self._segment_delete(segment)
            else:
                self._bytes += segment.size
                self._closed.append(segment)
        recovered = len(self._closed)
        self.seal(0.0)
        self._publish()
        if self._entries:
            log.info(
                "spool: %d batch(es), %d bytes left by a previous run (%d sealed now) will be "
                "delivered first",
                len(self._entries),
                self._bytes,
                recovered,
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

    def _segment_path(self, segment: Segment) -> Path:
        return self._dir / f"{segment.seq:016d}.{segment.kind}.seg"

    def _segment_open(self, segment: Segment) -> None:
        segment.handle = os.open(self._segment_path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _segment_write(self, segment: Segment, record: bytes) -> None:
        fd = segment.handle
        assert isinstance(fd, int)
        view = memoryview(record)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            try:  # take back a partial record, so that the segment stays readable to its end
                os.ftruncate(fd, segment.size)
            except OSError:
                pass  # the CRC finds the cut when it is read; nothing is appended after it
            raise

    def _segment_close(self, segment: Segment) -> None:
        if isinstance(segment.handle, int):
            fd, segment.handle = segment.handle, None
            os.close(fd)

    def _segment_read(self, segment: Segment) -> bytes:
        with open(self._segment_path(segment), "rb") as fh:
            return fh.read(segment.size)  # a torn record past ``size`` stays out

    def _segment_delete(self, segment: Segment) -> None:
        self._segment_path(segment).unlink(missing_ok=True)


def open_spool(
    directory: Path, max_bytes: int, metrics: CollectorMetrics, batch_max_bytes: int = BATCH_MAX_BYTES
) -> Spool:
    """A DiskSpool in ``directory``, or a MemorySpool (with one warning) if it can't be used."""
    try:
        spool = DiskSpool(directory, max_bytes, metrics, batch_max_bytes)
        probe = directory / ".probe.tmp"
        probe.write_bytes(b"")
        probe.unlink()
        return spool
    except OSError as exc:
        log.warning(
            "spool directory %s is unusable (%s): spooling in memory, so data not yet "
            "delivered is lost if the collector stops",
            directory,
            exc,
        )
        return MemorySpool(max_bytes, metrics, batch_max_bytes)
