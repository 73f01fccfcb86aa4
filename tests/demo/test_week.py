"""The order the simulated window is fed in: the newest day first, each day's batches
together, the last batch of each day marked."""

from __future__ import annotations

from api.demo.simulate import Window
from api.demo.week import SimulatedWeek
from tests.demo.common import MONDAY, SEED


def test_days_come_newest_first_and_cover_the_window_once() -> None:
    # 50 hours: two whole days back from the end, then the two oldest hours.
    week = SimulatedWeek(SEED, Window(MONDAY, 50 * 60))
    assert week.days == 3
    chunks = list(week.chunks(chunk_minutes=720))
    assert [day for day, _, _ in chunks] == [0, 0, 1, 1, 2]
    assert chunks[0] == (0, 26 * 60, 38 * 60) and chunks[1] == (0, 38 * 60, 50 * 60)
    assert chunks[-1] == (2, 0, 120)
    minutes = sorted(m for _, first, stop in chunks for m in range(first, stop))
    assert minutes == list(range(50 * 60))


def test_each_days_last_batch_closes_it_and_the_batches_hold_everything() -> None:
    week = SimulatedWeek(SEED, Window(MONDAY + 20 * 3600, 30 * 60))  # 30 h: a day, then 6 h
    batches = list(week.batches(max_bytes=2 * 1024 * 1024))
    days = [b.day for b in batches]
    assert days == sorted(days) and set(days) == {0, 1}
    closing = [i for i, b in enumerate(batches) if b.closes_day]
    assert closing == [days.index(1) - 1, len(batches) - 1]
    # The newest day reaches the window's end; the older one stops where the newest starts.
    assert max(b.until_s for b in batches if b.day == 0) == week.window.end_s
    assert max(b.until_s for b in batches if b.day == 1) == week.window.end_s - 86_400
    spans = sum(b.items for b in batches if b.path == "/v1/traces")
    points = sum(b.items for b in batches if b.path == "/v1/metrics")
    assert (spans, points) == (week.span_count(), week.point_count())
