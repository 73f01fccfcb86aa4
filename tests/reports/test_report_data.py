"""The weekly email's figures from real rollups: GPU samples go in through OTLP ingest,
`reports.gpu_days` counts minutes per GPU and local day, and prices come from the
metadata database. Dollars worked out by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from api.findings.catalogue import PriceBook
from api.findings.settings import CostSettings
from api.jobs.schedule import previous_week
from api.meta import Meta
from api.meta.prices import OverrideIn, PriceIn, create_override, set_price
from api.reports.data import gather_weekly_inputs, local_days, price_days, week_figures
from api.reports.weekly import build_weekly_report
from api.settings import Settings
from api.store import Store
from tests.alerts.feed import gpu_minutes

MIN = timedelta(minutes=1)
SENT_AT = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
START, END = previous_week(SENT_AT, "UTC")
DAY1, DAY2 = START.date(), START.date() + timedelta(days=1)


def test_price_days_multiplies_minutes_by_each_gpus_price() -> None:
    book = PriceBook(CostSettings(gpu_prices={"h100-sxm": 2.0}, host_prices={"spot-*": 1.0}))
    rows = [
        {
            "day": date(2026, 3, 2),
            "gpu_name": "NVIDIA H100 80GB HBM3",
            "host": "n1",
            "minutes": 120,
            "idle_minutes": 60,
        },
        {
            "day": date(2026, 3, 2),
            "gpu_name": "NVIDIA H100 80GB HBM3",
            "host": "spot-1",
            "minutes": 30,
            "idle_minutes": 30,
        },
    ]
    days, hours, idle_hours = price_days(rows, book, [date(2026, 3, 2), date(2026, 3, 3)])
    # n1: 2 h × $2 = $4, idle 1 h × $2 = $2; spot-1: 0.5 h × $1 = $0.50, all idle.
    assert [(d.day, d.spend_usd, d.idle_usd) for d in days] == [
        (date(2026, 3, 2), 4.5, 2.5),
        (date(2026, 3, 3), 0.0, 0.0),
    ]
    assert (hours, idle_hours) == (2.5, 1.5)


def test_local_days_follow_the_time_zone() -> None:
    start, end = previous_week(datetime(2026, 3, 30, 7, tzinfo=UTC), "Europe/Berlin")
    assert local_days(start, end, "Europe/Berlin") == [
        date(2026, 3, 23) + timedelta(days=i) for i in range(7)
    ]


def _feed(client: TestClient) -> None:
    day1 = datetime.combine(DAY1, datetime.min.time(), UTC) + timedelta(hours=10)
    day2 = datetime.combine(DAY2, datetime.min.time(), UTC) + timedelta(hours=2)
    # GPU A on n1, day 1: 60 idle minutes (1 %) then 60 busy (90 %).
    gpu_minutes(
        client,
        host="n1",
        uuid="GPU-A",
        index=0,
        starts=[day1 + i * MIN for i in range(120)],
        util=[1] * 60 + [90] * 60,
    )
    # GPU B on spot-1, day 2 at 02:00–02:59 UTC: 60 idle minutes.
    gpu_minutes(
        client,
        host="spot-1",
        uuid="GPU-B",
        index=0,
        starts=[day2 + i * MIN for i in range(60)],
        util=[0] * 60,
    )


def test_week_figures_from_the_rollups(client: TestClient, store: Store, settings: Settings) -> None:
    _feed(client)
    priced = settings.model_copy(
        update={"cost": CostSettings(gpu_prices={"h100-sxm": 2.0}, host_prices={"spot-*": 1.0})}
    )
    week = week_figures(store, priced, START, END, "UTC")
    by_day = {d.day: (round(d.spend_usd, 6), round(d.idle_usd, 6)) for d in week.days}
    assert len(week.days) == 7
    assert by_day[DAY1] == (4.0, 2.0)  # 2 h × $2, 1 idle h × $2
    assert by_day[DAY2] == (1.0, 1.0)  # 1 h × $1 (the spot pool), all idle
    assert (round(week.spend_usd, 6), round(week.idle_usd, 6)) == (5.0, 3.0)
    assert (week.gpu_hours, week.idle_gpu_hours) == (3.0, 2.0)
    # In New York, 02:00 UTC is the evening before: GPU B's hour moves to day 1.
    ny = week_figures(store, priced, START, END, "America/New_York")
    assert {d.day: round(d.idle_usd, 6) for d in ny.days}.get(DAY1) == 3.0


def test_gather_uses_the_prices_saved_in_the_metadata_database(
    client: TestClient, store: Store, settings: Settings, sqlite_meta: Meta, tmp_path: Path
) -> None:
    _feed(client)
    with sqlite_meta.session() as s:
        set_price(s, PriceIn(gpu_model="h100-sxm", usd_per_hour=2.0))
        create_override(s, OverrideIn(match="spot-*", usd_per_hour=1.0))
    configured = settings.model_copy(update={"public_url": "https://iw.example.com"})
    inputs = gather_weekly_inputs(store, sqlite_meta, configured, sent_at=SENT_AT, tz="UTC")
    assert (inputs.this_week.start, inputs.this_week.end) == (START, END)
    assert (round(inputs.this_week.spend_usd, 6), round(inputs.this_week.idle_usd, 6)) == (5.0, 3.0)
    assert inputs.last_week is None  # nothing reported the week before
    assert inputs.base_url == "https://iw.example.com"
    email = build_weekly_report(inputs)
    assert email.subject.startswith("inferwatch weekly: $5.00 on GPUs, $3.00 idle")
    assert "no figures for last week" in email.text
