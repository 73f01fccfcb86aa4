"""When jobs are due (known answers, daylight saving included), and leases: with several
replicas each slot runs once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from api.jobs.schedule import next_interval_slot, next_weekly_slot, previous_week
from api.jobs.scheduler import Job, Scheduler
from api.meta import Meta
from api.meta.leases import list_leases, release, try_acquire


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- slots -------------------------------------------------------------------------------------


def test_interval_slots_are_offset_past_the_boundary_and_strictly_later() -> None:
    assert next_interval_slot(at(2026, 3, 2, 12, 0, 14), 60, 15) == at(2026, 3, 2, 12, 0, 15)
    assert next_interval_slot(at(2026, 3, 2, 12, 0, 15), 60, 15) == at(2026, 3, 2, 12, 1, 15)
    assert next_interval_slot(at(2026, 3, 2, 12, 59, 50), 3600, 45) == at(2026, 3, 2, 13, 0, 45)


@pytest.mark.parametrize(
    ("after", "day", "hour", "tz", "expected"),
    [
        # Friday noon → Monday 09:00 Berlin: CEST (UTC+2) since 29 March 2026.
        (at(2026, 3, 27, 12), "mon", 9, "Europe/Berlin", at(2026, 3, 30, 7)),
        # In winter Berlin is UTC+1.
        (at(2026, 1, 1), "mon", 9, "Europe/Berlin", at(2026, 1, 5, 8)),
        # Exactly at a slot: the next one, a week later.
        (at(2026, 1, 5, 8), "mon", 9, "Europe/Berlin", at(2026, 1, 12, 8)),
        # Same day, earlier hour → today.
        (at(2026, 1, 5, 6), "mon", 9, "Europe/Berlin", at(2026, 1, 5, 8)),
        # 02:00 on 29 March 2026 does not exist in Berlin: the clocks jump to 03:00 CEST = 01:00 UTC.
        (at(2026, 3, 27), "sun", 2, "Europe/Berlin", at(2026, 3, 29, 1)),
        # 02:00 on 25 October 2026 happens twice in Berlin: the first, 02:00 CEST = 00:00 UTC.
        (at(2026, 10, 20), "sun", 2, "Europe/Berlin", at(2026, 10, 25, 0)),
        # New York, Monday 09:00 EST = 14:00 UTC; the date line does not move the weekday.
        (at(2026, 1, 1), "mon", 9, "America/New_York", at(2026, 1, 5, 14)),
        # Sydney Monday 09:00 AEDT (UTC+11) is Sunday 22:00 UTC.
        (at(2026, 1, 1), "mon", 9, "Australia/Sydney", at(2026, 1, 4, 22)),
    ],
)
def test_weekly_slots_follow_local_time(
    after: datetime, day: str, hour: int, tz: str, expected: datetime
) -> None:
    assert next_weekly_slot(after, day, hour, tz) == expected


def test_the_report_week_is_the_seven_local_days_before_the_send_day() -> None:
    # Sent Monday 30 March 2026 09:00 CEST: Monday 23 March 00:00 CET to Monday 30 March 00:00 CEST,
    # 167 hours long (the clocks went forward in between).
    start, end = previous_week(at(2026, 3, 30, 7), "Europe/Berlin")
    assert (start, end) == (at(2026, 3, 22, 23), at(2026, 3, 29, 22))
    assert end - start == timedelta(hours=167)
    assert previous_week(at(2026, 3, 2, 9), "UTC") == (at(2026, 2, 23), at(2026, 3, 2))


# --- leases --------------------------------------------------------------------------------------

T0 = at(2026, 3, 2, 12, 0, 15)
TTL = timedelta(minutes=10)


def test_each_slot_runs_on_one_replica_only(meta: Meta) -> None:
    ran: list[str] = []
    job = Job("alerts.live", lambda after: None, lambda slot: ran.append(slot.isoformat()), TTL)
    a, b = Scheduler(meta, [job], holder="replica-a"), Scheduler(meta, [job], holder="replica-b")
    assert a.run_slot(job, T0) is True
    assert b.run_slot(job, T0) is False
    assert b.run_slot(job, T0 + timedelta(minutes=1)) is True
    assert a.run_slot(job, T0 + timedelta(minutes=1)) is False
    assert a.run_slot(job, T0) is False  # an older slot never runs again
    assert ran == [T0.isoformat(), (T0 + timedelta(minutes=1)).isoformat()]
    (lease,) = list_leases(meta)
    assert (lease.name, lease.holder, lease.slot, lease.last_error) == (
        "alerts.live",
        "replica-b",
        T0 + timedelta(minutes=1),
        "",
    )


def test_a_lease_held_by_a_dead_replica_blocks_until_it_expires(meta: Meta) -> None:
    assert try_acquire(meta, "report.weekly", "dead", T0, ttl=TTL, now=T0)  # never released
    later = T0 + timedelta(minutes=1)
    assert not try_acquire(meta, "report.weekly", "alive", later, ttl=TTL, now=later)
    expired = T0 + TTL + timedelta(seconds=1)
    assert try_acquire(meta, "report.weekly", "alive", later, ttl=TTL, now=expired)
    release(meta, "report.weekly", "alive", error="boom", now=expired)
    (lease,) = list_leases(meta)
    assert (lease.holder, lease.last_error, lease.finished_at) == ("alive", "boom", expired)


def test_replicas_racing_for_one_slot_get_one_winner(meta: Meta) -> None:
    for round_ in range(5):
        slot = T0 + timedelta(minutes=round_)
        barrier = threading.Barrier(4)
        wins: list[str] = []

        def contend(name: str, slot: datetime, barrier: threading.Barrier, wins: list[str]) -> None:
            barrier.wait()
            if try_acquire(meta, "race", name, slot, ttl=TTL):
                wins.append(name)
                release(meta, "race", name)

        threads = [threading.Thread(target=contend, args=(f"r{i}", slot, barrier, wins)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(wins) == 1, f"slot {slot}: winners {wins}"


def test_a_failing_job_is_recorded_and_the_scheduler_goes_on(sqlite_meta: Meta) -> None:
    done = threading.Event()
    runs = {"bad": 0, "good": 0}

    def bad(slot: datetime) -> None:
        runs["bad"] += 1
        raise RuntimeError("the store is down")

    def good(slot: datetime) -> None:
        runs["good"] += 1
        if runs["good"] >= 3:
            done.set()

    soon = lambda after: after + timedelta(milliseconds=20)  # noqa: E731
    scheduler = Scheduler(
        sqlite_meta, [Job("bad", soon, bad, TTL), Job("good", soon, good, TTL)], max_sleep_s=0.05
    )
    scheduler.start()
    try:
        assert done.wait(20), "the good job stopped running"
    finally:
        scheduler.stop()
    assert runs["bad"] >= 1
    errors = {lease.name: lease.last_error for lease in list_leases(sqlite_meta)}
    assert errors == {"bad": "RuntimeError: the store is down", "good": ""}
