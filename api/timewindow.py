"""Durations and windows as people type them: `90s`, `15m`, `6h`, `7d`, `2w`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.errors import BadRequest

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_WINDOW = timedelta(days=400)
EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""Times the API accepts: well inside what the store's DateTime columns can hold."""


def parse_duration(text: str) -> timedelta:
    """`"7d"` → 7 days. Raises BadRequest naming the accepted forms."""
    match = _DURATION.match(text or "")
    if not match:
        raise BadRequest(f"not a duration: {text!r} (use a number and one of ms, s, m, h, d, w, e.g. 7d)")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range [start, end) in UTC."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def weeks(self) -> float:
        return self.seconds / 604800


def window_ending(text: str, end: datetime | None = None) -> Window:
    """The window of length `text` that ends at `end` (default: now), validated."""
    length = parse_duration(text)
    if length <= timedelta(0):
        raise BadRequest("the window must be longer than zero")
    if length > MAX_WINDOW:
        raise BadRequest(f"the window may be at most {MAX_WINDOW.days}d")
    end = end or datetime.now(UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    check_time(end, "the window's end")  # first: a far-past end minus the length overflows
    check_time(end - length, "the window's start")
    return Window(end - length, end)


def check_time(when: datetime, name: str) -> datetime:
    """`when` (timezone-aware) if the store can hold it; else BadRequest naming `name`."""
    if not EARLIEST <= when < LATEST:
        raise BadRequest(f"{name} must be between {EARLIEST.year} and {LATEST.year - 1}")
    return when
