"""When jobs are due. Pure functions of a time: tests pass the times they need."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from api.alerts.settings import WEEKDAYS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def next_interval_slot(after: datetime, every_s: int, offset_s: int = 0) -> datetime:
    """The first time strictly after `after` that is `offset_s` past a multiple of `every_s`
    seconds since the epoch (UTC). With every_s=60, offset_s=15: hh:mm:15 each minute."""
    if every_s <= 0:
        raise ValueError("every_s must be positive")
    seconds = (after - _EPOCH).total_seconds() - offset_s
    slot = (int(seconds // every_s) + 1) * every_s + offset_s
    return _EPOCH + timedelta(seconds=slot)


def next_weekly_slot(after: datetime, day: str, hour: int, tz: str) -> datetime:
    """The first time strictly after `after` that is `hour`:00 on weekday `day` (mon … sun)
    in time zone `tz`, returned in UTC.

    Local time decides, across daylight-saving changes: 09:00 in Berlin is 08:00 UTC in
    winter and 07:00 UTC in summer. An hour that does not exist that day (the spring-forward
    gap) is taken as the moment the clocks jump to; an hour that happens twice, the first.
    """
    zone = ZoneInfo(tz)
    if day not in WEEKDAYS:
        raise ValueError(f"not a weekday: {day!r} (use mon … sun)")
    target = list(WEEKDAYS).index(day)
    local = after.astimezone(zone)
    for days in range(0, 8):
        date = (local + timedelta(days=days)).date()
        if date.weekday() != target:
            continue
        naive = datetime(date.year, date.month, date.day, hour)
        candidate = _resolve_local(naive, zone)
        if candidate > after:
            return candidate
    raise AssertionError("a weekday recurs within 8 days")


def _resolve_local(naive: datetime, zone: ZoneInfo) -> datetime:
    # fold=0 takes the offset in force before a transition: for a whole hour in the
    # spring-forward gap that is the instant the clocks jump; for a repeated hour, the first.
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def previous_week(slot: datetime, tz: str) -> tuple[datetime, datetime]:
    """The seven whole local days before the day of `slot`: [start, end) in UTC. A report
    sent Monday 09:00 covers the previous Monday 00:00 to this Monday 00:00, local time."""
    zone = ZoneInfo(tz)
    day = slot.astimezone(zone).date()
    end = _resolve_local(datetime(day.year, day.month, day.day), zone)
    start_day = day - timedelta(days=7)
    start = _resolve_local(datetime(start_day.year, start_day.month, start_day.day), zone)
    return start, end
