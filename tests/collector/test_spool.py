"""The spool: oldest first, kept across restarts, bounded by bytes with the oldest dropped and
counted, never the batch being sent, and no crash when the disk refuses."""

from __future__ import annotations

import gzip
import random
import shutil
import time
from pathlib import Path

from collector.export import OtlpHttpExporter
from collector.queue import PayloadQueue
from collector.selfmetrics import CollectorMetrics
from collector.shipper import Shipper
from collector.spool import Added, DiskSpool, MemorySpool, compress, encode_record, open_spool


def dropped(metrics: CollectorMetrics, reason: str, kind: str = "traces") -> tuple[float, float]:
    return (
        metrics.value("inferwatch_collector_spool_dropped_batches_total", {"reason": reason}),
        metrics.value("inferwatch_collector_spool_dropped_items_total", {"kind": kind, "reason": reason}),
    )


def drain(spool: DiskSpool | MemorySpool) -> list[bytes]:
    """Every batch delivered, oldest first, each as the records it was sealed from."""
    out = []
    while (found := spool.next(timeout=0)) is not None:
        entry, body = found
        out.append(gzip.decompress(body))
        spool.done(entry)
    return out


def batch(spool: DiskSpool | MemorySpool, kind: str, items: int, body: bytes) -> int:
    """One record added and sealed into a batch of its own, as the batcher does; its size."""
    assert spool.add(kind, items, body) is Added.KEPT
    spool.seal(0.0, force=True)
    return len(compress([body]))


def noise(seed: int, size: int) -> bytes:
    """Bytes gzip cannot shrink (a batch's size is then its body's, plus gzip's framing)."""
    return random.Random(seed).randbytes(size)


def test_batches_come_out_oldest_first_byte_for_byte_and_survive_a_restart(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path, 10_000, CollectorMetrics())
    sizes = [batch(first, "traces", 3, b"A" * 10), batch(first, "metrics", 8, b"B" * 20)]
    sizes.append(batch(first, "traces", 1, b"C" * 30))
    entry, body = first.next(timeout=0)  # type: ignore[misc]
    assert (entry.kind, entry.items, gzip.decompress(body)) == ("traces", 3, b"A" * 10)
    first.release(entry)  # not delivered: it stays
    metrics = CollectorMetrics()
    second = DiskSpool(tmp_path, 10_000, metrics)  # a new process on the same directory
    assert [(e.kind, e.items, e.size) for e in second.entries()] == [
        ("traces", 3, sizes[0]),
        ("metrics", 8, sizes[1]),
        ("traces", 1, sizes[2]),
    ]
    assert metrics.value("inferwatch_collector_spool_bytes") == sum(sizes)
    batch(second, "traces", 2, b"D" * 5)  # numbered after what it found
    assert drain(second) == [b"A" * 10, b"B" * 20, b"C" * 30, b"D" * 5]
    assert not list(tmp_path.iterdir())


def test_a_full_spool_drops_the_oldest_batches_and_counts_them(tmp_path: Path) -> None:
    size = len(compress([noise(0, 40)]))  # every batch here is this size: 40 bytes + framing
    record = len(encode_record(noise(0, 40), 1))
    metrics = CollectorMetrics()
    spool = DiskSpool(tmp_path, 2 * size + record - 1, metrics)  # two batches and not a third record
    for i, items in enumerate((5, 6, 7)):
        batch(spool, "traces", items, noise(i, 40))
    # the third record found no room beside two batches: the first (5 items) made room for it
    assert dropped(metrics, "full") == (1, 5)
    assert spool.size_bytes == 2 * size
    assert drain(spool) == [noise(1, 40), noise(2, 40)]


def test_the_batch_being_sent_is_never_the_one_dropped(tmp_path: Path) -> None:
    size = len(compress([noise(0, 40)]))
    record = len(encode_record(noise(0, 40), 1))
    metrics = CollectorMetrics()
    spool = DiskSpool(tmp_path, 2 * size + record - 1, metrics)
    batch(spool, "traces", 1, noise(0, 40))
    batch(spool, "traces", 2, noise(1, 40))
    sending, _ = spool.next(timeout=0)  # type: ignore[misc]
    batch(spool, "traces", 3, noise(2, 40))
    assert dropped(metrics, "full") == (1, 2)  # the second went; the first (in flight) stayed
    spool.done(sending)
    assert drain(spool) == [noise(2, 40)]


def test_a_record_larger_than_the_whole_spool_is_refused_and_the_rest_kept(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 100, CollectorMetrics())
    batch(spool, "metrics", 1, b"A" * 10)
    assert spool.add("metrics", 9, b"X" * 101) is Added.TOO_LARGE  # the caller counts it
    assert drain(spool) == [b"A" * 10]


def test_a_write_cut_short_by_a_crash_is_discarded_not_delivered(tmp_path: Path) -> None:
    (tmp_path / "0000000000000007.traces.4.otlp.gz.tmp").write_bytes(b"half a batch")
    spool = DiskSpool(tmp_path, 1000, CollectorMetrics())
    assert len(spool) == 0
    assert not list(tmp_path.iterdir())


def test_a_disk_that_refuses_writes_costs_the_batch_not_the_collector(tmp_path: Path) -> None:
    metrics = CollectorMetrics()
    spool = DiskSpool(tmp_path / "spool", 1000, metrics)
    shutil.rmtree(tmp_path / "spool")  # the volume went away under us
    assert spool.add("traces", 4, b"A" * 10) is Added.WRITE_ERROR  # the relay answers 503
    assert len(spool) == 0 and spool.size_bytes == 0


def test_an_unusable_spool_directory_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    spool = open_spool(blocker / "spool", 1000, CollectorMetrics())
    assert isinstance(spool, MemorySpool)
    batch(spool, "traces", 1, b"kept in memory")
    assert drain(spool) == [b"kept in memory"]


def test_a_record_is_in_its_segment_file_when_add_returns_and_a_restart_seals_and_delivers_it(
    tmp_path: Path,
) -> None:
    first = DiskSpool(tmp_path, 10_000, CollectorMetrics())
    assert first.add("traces", 2, b"span-request-1") is Added.KEPT
    assert first.add("traces", 3, b"span-request-2") is Added.KEPT
    assert first.add("metrics", 1, b"metric-request") is Added.KEPT
    # Nothing sealed yet (no batch file), yet both records are in the file: a SIGKILL now
    # loses neither. The file is the length-prefixed records, byte for byte.
    assert not list(tmp_path.glob("*.otlp.gz"))
    traces = (tmp_path / "0000000000000001.traces.seg").read_bytes()
    assert traces == encode_record(b"span-request-1", 2) + encode_record(b"span-request-2", 3)
    # A crash mid-write leaves a torn third record behind the two good ones.
    with open(tmp_path / "0000000000000001.traces.seg", "ab") as fh:
        fh.write(encode_record(b"span-request-3-never-acknowledged", 9)[:20])
    metrics = CollectorMetrics()
    second = DiskSpool(tmp_path, 10_000, metrics)  # the next start seals what it finds
    assert not list(tmp_path.glob("*.seg"))
    assert [(e.seq, e.kind, e.items) for e in second.entries()] == [(1, "traces", 5), (2, "metrics", 1)]
    batches = drain(second)
    assert batches == [b"span-request-1span-request-2", b"metric-request"]
    assert metrics.value("inferwatch_collector_spooled_batches_total", {"kind": "traces"}) == 1


def test_a_segment_whose_batch_was_written_before_a_crash_is_not_delivered_twice(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 10_000, CollectorMetrics())
    spool.add("traces", 2, b"R" * 50)
    segment = (tmp_path / "0000000000000001.traces.seg").read_bytes()
    spool.seal(0.0)
    # As if killed between writing the batch and removing its segment: both on disk.
    (tmp_path / "0000000000000001.traces.seg").write_bytes(segment)
    again = DiskSpool(tmp_path, 10_000, CollectorMetrics())
    assert drain(again) == [b"R" * 50]
    assert not list(tmp_path.iterdir())


def test_segments_are_sealed_when_old_or_full_and_batches_keep_their_order(tmp_path: Path) -> None:
    record = len(encode_record(b"x" * 100, 1))
    spool = DiskSpool(tmp_path, 100_000, CollectorMetrics(), batch_max_bytes=3 * record)
    for i in range(7):  # 3 + 3 + 1 records: two full segments closed, one open
        spool.add("traces", 1, bytes([65 + i]) * 100)
    assert spool.seal(60.0) > 50  # the two full ones sealed; the open one is due in ~60 s
    assert [(e.seq, e.items) for e in spool.entries()] == [(1, 3), (2, 3)]
    spool.seal(60.0, force=True)
    bodies = drain(spool)
    assert bodies == [b"A" * 100 + b"B" * 100 + b"C" * 100, b"D" * 100 + b"E" * 100 + b"F" * 100, b"G" * 100]
    assert spool.size_bytes == 0 and len(spool) == 0


def test_room_for_a_new_record_is_made_by_dropping_the_oldest_batch_and_counted(tmp_path: Path) -> None:
    metrics = CollectorMetrics()
    old = batch(DiskSpool(tmp_path, 10_000, metrics), "traces", 4, noise(0, 200))  # an old batch
    spool = DiskSpool(tmp_path, old + 161, metrics)  # found at start; 161 < a 150-byte record
    assert spool.add("traces", 2, b"N" * 150) is Added.KEPT  # so the old one goes
    assert dropped(metrics, "full") == (1, 4)
    spool.seal(0.0)
    assert drain(spool) == [b"N" * 150]


def test_a_segment_filled_by_the_relay_is_sealed_at_once_not_at_the_flush_interval(tmp_path: Path) -> None:
    record = len(encode_record(b"x" * 100, 1))
    metrics = CollectorMetrics()
    spool = DiskSpool(tmp_path, 100_000, metrics, batch_max_bytes=2 * record)
    exporter = OtlpHttpExporter("http://127.0.0.1:9", None, deadline_s=0.1)  # nobody listens
    shipper = Shipper(PayloadQueue(2**20), spool, exporter, metrics, flush_interval_s=60.0, pause_max_s=0.1)
    shipper.start()
    try:
        time.sleep(0.2)  # the batcher is now waiting out its 60 s
        for i in range(3):  # the third record closes the first segment (two records)
            assert spool.add("traces", 1, bytes([65 + i]) * 100) is Added.KEPT
        deadline = time.monotonic() + 5
        while not spool.entries() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [(e.seq, e.items) for e in spool.entries()] == [(1, 2)]  # the open one waits
    finally:
        shipper.stop(grace_s=0)
        exporter.close()
