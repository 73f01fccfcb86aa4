"""Constants shared by the demo tests."""

MONDAY = 1_794_787_200  # 2026-11-16 00:00 UTC, a Monday
SEED = 7
