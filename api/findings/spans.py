"""Which rollup answers which part of a window.

The findings read the coarsest rollup that holds a part exactly: the daily one for whole
days (quantile states only: `findings_deployment_day`), the hourly ones (migration 0003)
for whole hours, the minute rollups (0002) for the rest. Windows of a day or more are cut
to whole hours first (`align`), so the minute rollups only serve short windows, and hours
from before the hourly rollups existed.

The hourly and daily rollups are filled by materialized views, so they hold only what was
inserted after the views were created: an hour is read from them when it starts at or
after the first whole hour after that (`rollups_since`). Pure: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.timewindow import Window

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def floor_to(t: datetime, step: timedelta) -> datetime:
    """`t` floored to a whole minute, hour or day (of its own clock)."""
    t = t.replace(second=0, microsecond=0)
    if step >= HOUR:
        t = t.replace(minute=0)
    if step >= DAY:
        t = t.replace(hour=0)
    return t


def ceil_to(t: datetime, step: timedelta) -> datetime:
    floored = floor_to(t, step)
    return floored if floored == t else floored + step


def floor_hour(t: datetime) -> datetime:
    return floor_to(t, HOUR)


def align(window: Window) -> Window:
    """The window the findings are computed over: a window of a day or more cut to whole
    hours (both ends floored: the hour in progress is left out, the length kept); a
    shorter one to whole minutes, the rollups' resolution."""
    step = HOUR if window.end - window.start >= DAY else timedelta(minutes=1)
    return Window(floor_to(window.start, step), floor_to(window.end, step))


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _empty(at: datetime) -> Window:
    return Window(at, at)


@dataclass(frozen=True, slots=True)
class Spans:
    """A window cut at whole hours and days. `hours`: the whole hours the hourly rollups
    answer, and within them `days`, the whole days; `head` and `tail`: the minutes before
    and after `hours`, from the minute rollups. Any part may be empty (start == end)."""

    head: Window
    hours: Window
    days: Window
    tail: Window

    @property
    def minutes_only(self) -> bool:
        return self.hours.start == self.hours.end

    @property
    def has_minutes(self) -> bool:
        return self.head.start != self.head.end or self.tail.start != self.tail.end

    def params(self) -> dict[str, Any]:
        """The query parameters of the findings queries (api/store/sql/findings.py)."""
        return {
            "head_from": self.head.start,
            "head_to": self.head.end,
            "hours_from": self.hours.start,
            "hours_to": self.hours.end,
            "days_from": self.days.start,
            "days_to": self.days.end,
            "hour_head_from": self.hours.start,
            "hour_head_to": self.days.start,
            "hour_tail_from": self.days.end,
            "hour_tail_to": self.hours.end,
            "tail_from": self.tail.start,
            "tail_to": self.tail.end,
        }


def split(window: Window, rollups_since: datetime | None) -> Spans:
    """Cut `window` into the parts each rollup answers. `rollups_since`: when the hourly
    and daily rollups began to be filled (None: not at all; every part is minutes)."""
    window = Window(_utc(window.start), _utc(window.end))
    end = window.end
    if rollups_since is None:
        return Spans(window, _empty(end), _empty(end), _empty(end))
    first = max(ceil_to(window.start, HOUR), ceil_to(_utc(rollups_since), HOUR))
    last = floor_to(end, HOUR)
    if first >= last:
        return Spans(window, _empty(end), _empty(end), _empty(end))
    day_first, day_last = ceil_to(first, DAY), floor_to(last, DAY)
    days = Window(day_first, day_last) if day_first < day_last else _empty(last)
    return Spans(Window(window.start, first), Window(first, last), days, Window(last, end))
