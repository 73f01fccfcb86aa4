"""A simulated week shared by the generator tests (simulating it takes a second or two)."""

from __future__ import annotations

import pytest

from api.demo.simulate import Window
from api.demo.week import SimulatedWeek
from tests.demo.common import MONDAY, SEED


@pytest.fixture(scope="package")
def week() -> SimulatedWeek:
    return SimulatedWeek(SEED, Window(MONDAY, 7 * 1440))
