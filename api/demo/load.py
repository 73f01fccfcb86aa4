"""Demand over the week: relative request rates (0..1) by time of day and weekday, UTC.

Each shape is a pure function of epoch seconds, so the idle hours are exact: `workday`
traffic is zero from 01:00 to 07:00 every day, which is what the idle-GPU finding
should report.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

NIGHT = (1.0, 7.0)
"""Hours (UTC, [start, end)) when `workday` deployments get no requests at all."""


def hour_of_day(t: FloatArray) -> FloatArray:
    return np.asarray((t % 86_400) / 3600.0, dtype=np.float64)


def weekday(t: FloatArray) -> npt.NDArray[np.int64]:
    """0 = Monday (1970-01-01 was a Thursday)."""
    return np.asarray((np.floor(t / 86_400).astype(np.int64) + 3) % 7)


def is_weekend(t: FloatArray) -> npt.NDArray[np.bool_]:
    return np.asarray(weekday(t) >= 5)


def _bump(h: FloatArray, centre: float, width: float) -> FloatArray:
    d = np.abs(h - centre)
    d = np.minimum(d, 24.0 - d)
    return np.asarray(np.exp(-0.5 * (d / width) ** 2))


def _ramp(h: FloatArray, start: float, end: float) -> FloatArray:
    """0 before `start`, 1 after `end`, smooth in between."""
    x = np.clip((h - start) / (end - start), 0.0, 1.0)
    return np.asarray(x * x * (3 - 2 * x))


def chat(t: FloatArray) -> FloatArray:
    """Consumer chat: never idle, a broad afternoon peak (14:30 UTC) and an evening shoulder."""
    h = hour_of_day(t)
    level = 0.07 + 0.93 * _bump(h, 14.5, 3.6) + 0.18 * _bump(h, 20.5, 1.6)
    return np.asarray(np.minimum(level, 1.0) * np.where(is_weekend(t), 0.5, 1.0))


def workday(t: FloatArray) -> FloatArray:
    """Office hours on weekdays with a lunch dip, a thin evening tail, nothing 01:00–07:00."""
    h = hour_of_day(t)
    day = _ramp(h, 7.0, 9.0) * (1.0 - _ramp(h, 17.0, 19.5)) * (1.0 - 0.3 * _bump(h, 12.6, 0.6))
    evening = np.where((h >= 19.5) | (h < NIGHT[0]), 0.05, 0.0)
    level = np.maximum(day, evening)
    weekend = np.where((h >= 10.0) & (h < 18.0), 0.04, 0.0)
    level = np.where(is_weekend(t), weekend, level)
    return np.asarray(np.where((h >= NIGHT[0]) & (h < NIGHT[1]), 0.0, level))


def support(t: FloatArray) -> FloatArray:
    """Customer support: around the clock, busiest mid-afternoon."""
    h = hour_of_day(t)
    level = 0.22 + 0.78 * _bump(h, 15.0, 4.5)
    return np.asarray(level * np.where(is_weekend(t), 0.7, 1.0))


SHAPES: dict[str, Callable[[FloatArray], FloatArray]] = {
    "chat": chat,
    "workday": workday,
    "support": support,
}


def shape(name: str, t: FloatArray) -> FloatArray:
    """Relative demand (0..1) of the named shape at epoch seconds `t`."""
    return SHAPES[name](np.asarray(t, dtype=np.float64))
