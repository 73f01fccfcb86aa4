"""The spool: oldest first, kept across restarts, bounded by bytes with the oldest dropped and
counted, never the batch being sent, and no crash when the disk refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

from collector.selfmetrics import CollectorMetrics
from collector.spool import DiskSpool, MemorySpool, open_spool


def dropped(metrics: CollectorMetrics, reason: str, kind: str = "traces") -> tuple[float, float]:
    return (
        metrics.value("inferwatch_collector_spool_dropped_batches_total", {"reason": reason}),
        metrics.value("inferwatch_collector_spool_dropped_items_total", {"kind": kind, "reason": reason}),
    )


def drain(spool: DiskSpool | MemorySpool) -> list[bytes]:
    out = []
    while (found := spool.next(timeout=0)) is not None:
        entry, body = found
        out.append(body)
        spool.done(entry)
    return out


def test_batches_come_out_oldest_first_byte_for_byte_and_survive_a_restart(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path, 10_000, CollectorMetrics())
    first.append("traces", 3, b"A" * 10)
    first.append("metrics", 8, b"B" * 20)
    first.append("traces", 1, b"C" * 30)
    entry, body = first.next(timeout=0)  # type: ignore[misc]
    assert (entry.kind, entry.items, body) == ("traces", 3, b"A" * 10)
    first.release(entry)  # not delivered: it stays
    metrics = CollectorMetrics()
    second = DiskSpool(tmp_path, 10_000, metrics)  # a new process on the same directory
    assert [(e.kind, e.items, e.size) for e in second.entries()] == [
        ("traces", 3, 10),
        ("metrics", 8, 20),
        ("traces", 1, 30),
    ]
    assert metrics.value("inferwatch_collector_spool_bytes") == 60
    second.append("traces", 2, b"D" * 5)  # numbered after what it found
    assert drain(second) == [b"A" * 10, b"B" * 20, b"C" * 30, b"D" * 5]
    assert not list(tmp_path.glob("*.otlp.gz"))


def test_a_full_spool_drops_the_oldest_batches_and_counts_them(tmp_path: Path) -> None:
    metrics = CollectorMetrics()
    spool = DiskSpool(tmp_path, 100, metrics)
    for i, items in enumerate((5, 6, 7)):
        spool.append("traces", items, bytes([65 + i]) * 40)
    # 3 x 40 bytes > 100: the first batch (5 items) made room for the third
    assert dropped(metrics, "full") == (1, 5)
    assert spool.size_bytes == 80
    assert drain(spool) == [b"B" * 40, b"C" * 40]


def test_the_batch_being_sent_is_never_the_one_dropped(tmp_path: Path) -> None:
    metrics = CollectorMetrics()
    spool = DiskSpool(tmp_path, 100, metrics)
    spool.append("traces", 1, b"A" * 40)
    spool.append("traces", 2, b"B" * 40)
    sending, _ = spool.next(timeout=0)  # type: ignore[misc]
    spool.append("traces", 3, b"C" * 40)
    assert dropped(metrics, "full") == (1, 2)  # B went, A (in flight) stayed
    spool.done(sending)
    assert drain(spool) == [b"C" * 40]


def test_a_batch_larger_than_the_whole_spool_is_dropped_on_arrival(tmp_path: Path) -> None:
    metrics = CollectorMetrics()
    spool = DiskSpool(tmp_path, 100, metrics)
    spool.append("metrics", 1, b"A" * 10)
    assert spool.append("metrics", 9, b"X" * 101) is False
    assert dropped(metrics, "too_large", "metrics") == (1, 9)
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
    assert spool.append("traces", 4, b"A" * 10) is False
    assert dropped(metrics, "write_error") == (1, 4)
    assert len(spool) == 0


def test_an_unusable_spool_directory_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    spool = open_spool(blocker / "spool", 1000, CollectorMetrics())
    assert isinstance(spool, MemorySpool)
    spool.append("traces", 1, b"kept in memory")
    assert drain(spool) == [b"kept in memory"]
