"""Where accepted rows go: straight into the store, or through a write-ahead log.

`DirectWriter` inserts each OTLP request's rows while the request waits, as one insert.
Every insert costs ClickHouse a fixed ≈ 30–100 ms (parts written, views planned) however
few its rows, so a server fed by many hosts spends most of its time on that fixed cost.

`LoggedWriter` (the default) appends the rows to a write-ahead log on local disk and
answers; a background thread inserts what has gathered, one insert per table every
`ingest_flush_s` or every `ingest_flush_rows` rows. What it promises:

- Acknowledged means on disk: a record is written (not fsynced) before the request is
  answered, so a killed server loses nothing; the log replays at the next start. A power
  cut can lose what the operating system had not yet written back.
- Idempotent as before: a retried request (same dedup token) is answered without being
  stored again, for `ingest_dedup_window_s` after it was first accepted, across restarts;
  a segment inserted again after a crash carries the same token, which ClickHouse drops.
- Bounded: past `ingest_wal_max_bytes` waiting on disk (the store down or behind),
  requests get 503 with Retry-After, so senders keep their data and retry.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from api.errors import ConfigError, StoreError
from api.ingest import wal
from api.settings import Settings
from api.store import Store
from api.telemetry import ServerMetrics

log = logging.getLogger(__name__)

MAX_TOKENS = 500_000
"""Most dedup tokens remembered (≈ 50 MiB), whatever the window."""
MEMORY_BYTES = 128 << 20
"""Sealed segments beyond this much wait on disk only, so an outage fills the disk, not memory."""
_STOP_TIMEOUT_S = 30.0
_MAX_BACKOFF_S = 30.0


class Writer(Protocol):
    def write(self, table: str, rows: pa.Table, token: str) -> bool:
        """Store `rows` in `table`; False when `token` was already accepted (nothing done)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class DirectWriter:
    """One insert per request, while it waits; ClickHouse deduplicates by token."""

    def __init__(self, store: Store, metrics: ServerMetrics) -> None:
        self._store = store
        self._metrics = metrics

    def write(self, table: str, rows: pa.Table, token: str) -> bool:
        self._store.insert(table, rows, dedup_token=token)
        self._metrics.rows_written.labels(table).inc(rows.num_rows)
        return True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass(eq=False, slots=True)
class _Segment:
    path: Path
    fd: int | None
    opened: float
    records: list[wal.Record] | None = field(default_factory=list)
    """None once only on disk (the store is behind): read back when its turn comes."""
    rows: int = 0
    size: int = 0

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass(eq=False, slots=True)
class _Lane:
    """One table's log: at most one segment taking records, then sealed ones in order."""

    table: str
    directory: Path
    next_sequence: int
    open: _Segment | None = None
    sealed: deque[_Segment] = field(default_factory=deque)


class LoggedWriter:
    def __init__(
        self,
        store: Store,
        directory: Path,
        metrics: ServerMetrics,
        *,
        flush_s: float,
        flush_rows: int,
        max_bytes: int,
        dedup_window_s: float,
    ) -> None:
        self._store = store
        self._directory = directory
        self._metrics = metrics
        self._flush_s = flush_s
        self._flush_rows = flush_rows
        self._max_bytes = max_bytes
        self._window_s = dedup_window_s
        self._lanes: dict[str, _Lane] = {}
        self._recent: OrderedDict[int, float] = OrderedDict()
        """First 64 bits of each accepted token → when it was accepted (wall clock), oldest
        first. Ordered so the oldest goes in O(1): a plain dict emptied from the front scans
        the slots it freed on every lookup of its first key (≈ 50 µs a request at 200,000)."""
        self._waiting_bytes = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flush_now = False
        self._lock_fd: int | None = None
        self._tokens_fd: int | None = None
        self._tokens_lines = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Take the log's lock, replay what a previous process left, start the flusher."""
        self._directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self._directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ConfigError(
                f"another inferwatch server is using the write-ahead log in {self._directory}; "
                "give each server its own --data-dir"
            ) from None
        self._load_tokens()
        for directory in sorted(p for p in self._directory.iterdir() if p.is_dir()):
            self._replay(directory)
        self._thread = threading.Thread(target=self._run, name="inferwatch-wal", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Insert everything waiting (for up to 30 s); what the store refuses stays on disk
        and replays at the next start."""
        if self._thread is None:
            return
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join(_STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("write-ahead log not drained in %.0f s; the rest replays at start", _STOP_TIMEOUT_S)
            return  # the flusher still holds segments; the process is about to end
        self._thread = None
        for lane in self._lanes.values():
            for segment in (lane.open, *lane.sealed):
                if segment is not None:
                    segment.close()
        for fd in (self._tokens_fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._tokens_fd = self._lock_fd = None

    def flush(self, timeout_s: float = _STOP_TIMEOUT_S) -> bool:
        """Insert everything accepted so far, now; True once nothing waits."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            self._flush_now = True
            self._changed.notify_all()
            try:
                while self._waiting_rows():
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None:
                        return False
                    self._changed.wait(left)
            finally:
                self._flush_now = False
        return True

    # --- the request path --------------------------------------------------------------------

    def write(self, table: str, rows: pa.Table, token: str) -> bool:
        pieces = wal.encode(token, rows)
        key = int(token[:16], 16)
        with self._lock:
            if self._thread is None or self._stopping:
                raise StoreError("the server is starting or stopping; retry")
            now = time.time()
            self._expire(now)
            if key in self._recent:
                self._metrics.ingest_repeats.labels(table).inc()
                return False
            if self._waiting_bytes >= self._max_bytes:
                self._metrics.wal_refusals.inc()
                raise StoreError(
                    f"the store is behind: {self._waiting_bytes >> 20} MiB of accepted rows wait in the "
                    f"write-ahead log (limit {self._max_bytes >> 20} MiB); retry later"
                )
            try:
                lane = self._lane(table)
                segment = lane.open or self._open_segment(lane)
                assert segment.fd is not None
                size = wal.append(segment.fd, pieces)
            except OSError as exc:  # a full or read-only disk: the sender keeps its data and retries
                self._metrics.wal_refusals.inc()
                raise StoreError(f"cannot write the write-ahead log: {exc.strerror or exc}") from exc
            assert segment.records is not None  # the open segment is always in memory
            segment.records.append(wal.Record(token, rows))
            segment.rows += rows.num_rows
            segment.size += size
            self._waiting_bytes += size
            self._metrics.wal_bytes.set(self._waiting_bytes)
            self._recent[key] = now
            if segment.rows >= self._flush_rows:
                self._seal(lane)
                self._changed.notify_all()
        return True

    # --- the flusher ---------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._changed:
                due = self._seal_due()
                work = [lane for lane in self._lanes.values() if lane.sealed]
                if not work:
                    if self._stopping:
                        return
                    self._changed.wait(due)
                    continue
            failed = False
            for lane in work:
                try:
                    inserted = self._insert(lane)
                except Exception:  # a bug or the disk, not the store: keep the thread, retry later
                    log.exception("write-ahead log: inserting %s failed", lane.table)
                    inserted = False
                if not inserted:
                    failed = True
                    break
            if failed:
                if self._stopping:
                    return  # the rest stays on disk for the next start
                backoff = min(_MAX_BACKOFF_S, backoff * 2 or 0.5)
                retry_at = time.monotonic() + backoff
                with self._changed:
                    while not self._stopping and (left := retry_at - time.monotonic()) > 0:
                        self._changed.wait(left)
            else:
                backoff = 0.0

    def _seal_due(self) -> float:
        """Seal the open segments that are old enough (all of them when stopping or asked
        to flush); the seconds until the next one will be."""
        now = time.monotonic()
        wait = self._flush_s
        for lane in self._lanes.values():
            segment = lane.open
            if segment is None:
                continue
            age = now - segment.opened
            if age >= self._flush_s or self._stopping or self._flush_now:
                self._seal(lane)
            else:
                wait = min(wait, self._flush_s - age)
        return wait

    def _insert(self, lane: _Lane) -> bool:
        """Insert the lane's oldest sealed segment; False if the store refused it."""
        segment = lane.sealed[0]
        try:
            records = segment.records
            if records is None:
                records = wal.read_segment(segment.path).records
            tokens = [record.token for record in records]
            # One chunk per column: chDB reads a column of many chunks (one per request) far
            # slower than the same rows in one (768 40-row requests: 280 → 100 ms).
            rows = pa.concat_tables([record.rows for record in records], promote_options="default")
            rows = rows.combine_chunks()
            group = hashlib.sha256("\n".join(tokens).encode()).hexdigest()
            self._store.insert(lane.table, rows, dedup_token=group)
        except StoreError as exc:
            self._metrics.wal_flushes.labels(lane.table, "failed").inc()
            log.warning("write-ahead log: %s rows for %s wait: %s", segment.rows, lane.table, exc.message)
            return False
        except Exception:
            # Not the store's fault: rows that can never be inserted (a schema this version
            # does not know). Set aside for a person, never retried forever or deleted.
            log.exception("write-ahead log: segment %s cannot be inserted; moved aside", segment.path)
            self._metrics.wal_flushes.labels(lane.table, "set_aside").inc()
            segment.close()
            aside = lane.directory / "set-aside"
            aside.mkdir(exist_ok=True)
            segment.path.rename(aside / segment.path.name)
            self._done(lane, segment)
            return True
        self._remember(tokens)
        segment.close()
        segment.path.unlink(missing_ok=True)
        self._metrics.rows_written.labels(lane.table).inc(rows.num_rows)
        self._metrics.wal_flushes.labels(lane.table, "inserted").inc()
        self._done(lane, segment)
        return True

    def _done(self, lane: _Lane, segment: _Segment) -> None:
        with self._changed:
            lane.sealed.popleft()
            self._waiting_bytes -= segment.size
            self._metrics.wal_bytes.set(self._waiting_bytes)
            self._changed.notify_all()

    # --- segments ------------------------------------------------------------------------------

    def _lane(self, table: str) -> _Lane:
        lane = self._lanes.get(table)
        if lane is None:
            directory = self._directory / table
            directory.mkdir(exist_ok=True)
            lane = self._lanes[table] = _Lane(table, directory, 1)
        return lane

    def _open_segment(self, lane: _Lane) -> _Segment:
        path = lane.directory / wal.segment_name(lane.next_sequence)
        lane.next_sequence += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        lane.open = _Segment(path, fd, time.monotonic())
        return lane.open

    def _seal(self, lane: _Lane) -> None:
        segment = lane.open
        if segment is not None:
            segment.close()
            self._queue(lane, segment)
            lane.open = None

    def _queue(self, lane: _Lane, segment: _Segment) -> None:
        """Queue a sealed segment for insert, its rows kept in memory only while the sealed
        segments' rows there stay under MEMORY_BYTES (else read back from disk in turn)."""
        sealed = [s for other in self._lanes.values() for s in other.sealed]
        if sum(s.size for s in sealed if s.records is not None) + segment.size > MEMORY_BYTES:
            segment.records = None
        lane.sealed.append(segment)

    def _waiting_rows(self) -> int:
        segments = [s for lane in self._lanes.values() for s in (lane.open, *lane.sealed) if s is not None]
        return sum(s.rows for s in segments)

    def _replay(self, directory: Path) -> None:
        """Queue the segments a previous process left (killed, or stopped with the store
        down) for insert, and remember their tokens."""
        lane = self._lane(directory.name)
        now = time.time()
        for path in wal.segments(directory):
            replayed = wal.read_segment(path)
            if replayed.torn_bytes:
                log.warning(
                    "write-ahead log: %s ends in %d bytes of a torn write; the records before them replay",
                    path,
                    replayed.torn_bytes,
                )
                self._metrics.wal_torn_bytes.inc(replayed.torn_bytes)
            lane.next_sequence = max(lane.next_sequence, int(path.stem) + 1)
            if not replayed.records:
                path.unlink()
                continue
            segment = _Segment(path, None, 0.0, list(replayed.records))
            segment.rows = sum(r.rows.num_rows for r in replayed.records)
            segment.size = path.stat().st_size
            self._queue(lane, segment)
            self._metrics.wal_replayed_rows.labels(lane.table).inc(segment.rows)
            self._waiting_bytes += segment.size
            for record in replayed.records:
                self._recent[int(record.token[:16], 16)] = now
        self._metrics.wal_bytes.set(self._waiting_bytes)

    # --- dedup tokens --------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        recent = self._recent
        oldest = now - self._window_s
        while recent:
            at = next(iter(recent.values()))
            if at >= oldest and len(recent) < MAX_TOKENS:
                break
            recent.popitem(last=False)

    def _load_tokens(self) -> None:
        """Tokens of rows already inserted, from the file `_remember` appends to; rewritten
        to the ones still inside the window."""
        path = self._directory / "tokens"
        oldest = time.time() - self._window_s
        kept: list[str] = []
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split()
                try:
                    key, at = int(parts[0], 16), float(parts[1])
                except (IndexError, ValueError):
                    continue  # a line cut short by a crash
                if at >= oldest:
                    self._recent[key] = at
                    kept.append(line)
        self._tokens_fd = self._rewrite_tokens(kept[-MAX_TOKENS:])

    def _remember(self, tokens: list[str]) -> None:
        """Note inserted tokens on disk, so a retry after a restart is still known. Before
        the segment is deleted: a crash between the two replays it, which ClickHouse drops."""
        if self._tokens_fd is None:
            return
        now = time.time()
        try:
            os.write(self._tokens_fd, "".join(f"{t[:16]} {now:.0f}\n" for t in tokens).encode())
        except OSError as exc:  # the tokens stay known in memory; only a restart forgets them
            log.warning("write-ahead log: cannot note inserted tokens: %s", exc)
            return
        self._tokens_lines += len(tokens)
        if self._tokens_lines > 2 * MAX_TOKENS:
            with self._lock:
                lines = [f"{key:016x} {at:.0f}" for key, at in self._recent.items()]
            os.close(self._tokens_fd)
            self._tokens_fd = self._rewrite_tokens(lines)

    def _rewrite_tokens(self, lines: list[str]) -> int:
        path = self._directory / "tokens"
        temporary = path.with_suffix(".new")
        temporary.write_text("".join(f"{line}\n" for line in lines))
        temporary.replace(path)
        self._tokens_lines = len(lines)
        return os.open(path, os.O_WRONLY | os.O_APPEND)


def open_writer(settings: Settings, store: Store, metrics: ServerMetrics) -> Writer:
    """The writer the settings ask for: the write-ahead log unless INGEST_FLUSH_S is 0."""
    if settings.ingest_flush_s == 0:
        return DirectWriter(store, metrics)
    return LoggedWriter(
        store,
        settings.wal_path,
        metrics,
        flush_s=settings.ingest_flush_s,
        flush_rows=settings.ingest_flush_rows,
        max_bytes=settings.ingest_wal_max_bytes,
        dedup_window_s=settings.ingest_dedup_window_s,
    )
