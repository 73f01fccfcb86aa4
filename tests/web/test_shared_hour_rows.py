"""One read of the hourly GPU rollup for the overview (`api.findings.hour_rows`): the fleet
and the findings computed from the shared rows are exactly what each computes from its own
query, and an overview with nothing kept reads the rollup once.

The seeded fleet (`seed.py`) is three hours old; the hourly rollups' migration is recorded
as run a day earlier (as `bench.web` does), so its whole hours come from `findings_gpu_hour`
(written by several views: unmerged rows) and only the window's edges from the minutes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.findings.engine import align, run_findings, window_spans
from api.findings.gpu_hours import gpu_facts
from api.findings.hour_rows import HourRows, as_gpu_hours
from api.routes.gpus import read_gpu_hours
from api.routes.results import forget
from api.settings import Settings
from api.store import Store
from api.store.gateway import Query
from api.store.sql import findings as sql
from api.store.transports import ChdbTransport
from api.timewindow import Window
from tests.web.conftest import LOOPBACK

BACKDATE = Query(
    "test.backdate",
    "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
    "VALUES ({version:UInt32}, 'findings', 'test', {at:DateTime64(6)})",
)

UNMERGED = Query(
    "test.unmerged",
    "SELECT count() AS stored, uniqExact(cluster, host, gpu_uuid, hour) AS gpu_hours FROM findings_gpu_hour",
)


@pytest.fixture(scope="module")
def fleet(_module_app: tuple[FastAPI, Store], seeded: TestClient) -> tuple[Settings, Store]:
    app, store = _module_app
    store.execute(
        BACKDATE,
        version=sql.ROLLUPS_MIGRATION,
        at=(datetime.now(UTC) - timedelta(days=1)).replace(tzinfo=None),
    )
    (rows,) = store.rows(UNMERGED)
    assert rows["stored"] > rows["gpu_hours"] > 0  # some GPU-hours are in several rows
    return app.state.settings, store


def _window() -> Window:
    """Six hours cut mid-minute at both ends: partial first and last hours."""
    end = datetime.now(UTC).replace(second=30, microsecond=0) + timedelta(minutes=2)
    return Window(end - timedelta(hours=6, minutes=17), end)


def _same(a: object, b: object) -> None:
    assert dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b)
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), field.name
        else:
            assert x == y, field.name


@pytest.mark.parametrize("idle_pct", [None, 0.0])
def test_the_fleet_from_shared_rows_is_the_fleet_read_alone(
    fleet: tuple[Settings, Store], idle_pct: float | None
) -> None:
    settings, store = fleet
    f = settings.findings
    pct = f.idle_threshold_pct if idle_pct is None else idle_pct
    w = _window()
    forget(store)
    alone = read_gpu_hours(store, settings, w, idle_pct=pct)
    forget(store)
    rows = HourRows(store, w.start, w.end, idle_pct=pct, held_mib=f.held_memory_mib)
    shared = read_gpu_hours(store, settings, w, idle_pct=pct, hour_rows=rows)
    assert len(alone.keys) == 4 and len(alone) > 0  # the four seeded GPUs
    _same(alone, shared)


def test_the_findings_gpu_facts_from_rows_are_those_of_the_grouped_query(
    fleet: tuple[Settings, Store],
) -> None:
    settings, store = fleet
    f = settings.findings
    spans = window_spans(store, align(_window()))
    assert not spans.minutes_only  # whole hours from the hourly rollup
    thresholds = {"idle_pct": f.idle_threshold_pct, "held_mib": f.held_memory_mib}
    minutes = [store.arrow(sql.GPU_MINUTES, **thresholds, **spans.params())] if spans.has_minutes else []
    grouped = store.arrow(sql.GPU_HOURS, **thresholds, **spans.params())
    old = gpu_facts([grouped, *minutes], tz=f.timezone, streak_min=f.streak_min_minutes)
    hours = spans.hours
    rows = HourRows(store, hours.start, hours.end, idle_pct=f.idle_threshold_pct, held_mib=f.held_memory_mib)
    table = rows.table()
    new = gpu_facts(
        [as_gpu_hours(table, hours.start, hours.end), *minutes],
        tz=f.timezone,
        streak_min=f.streak_min_minutes,
    )
    assert len(new.gpus) == 4
    assert (new.gpus, new.hosts, new.cost) == (old.gpus, old.hosts, old.cost)
    # GPU-b0 sat idle and empty for every seeded minute of the window: its idle minutes are
    # its reported minutes.
    (b0,) = [g for g in new.gpus if g.gpu_uuid == "GPU-b0"]
    assert b0.idle_minutes == b0.minutes > 0 and b0.idle_held_minutes == 0


def test_findings_with_shared_rows_are_the_findings_read_alone(fleet: tuple[Settings, Store]) -> None:
    settings, store = fleet
    f = settings.findings
    w = _window()
    rows = HourRows(store, w.start, w.end, idle_pct=f.idle_threshold_pct, held_mib=f.held_memory_mib)
    rows.table()  # claimed, as the overview's fleet does
    shared = run_findings(store, settings, w, hour_rows=rows)
    assert shared and shared == run_findings(store, settings, w)
    unclaimed = HourRows(store, w.start, w.end, idle_pct=f.idle_threshold_pct, held_mib=f.held_memory_mib)
    unclaimed.settle()  # the fleet was kept: the findings read their own query
    assert run_findings(store, settings, w, hour_rows=unclaimed) == shared


@pytest.fixture
def observed(fleet: tuple[Settings, Store], chdb_dir: Path) -> Iterator[tuple[TestClient, list[str]]]:
    """The app on a second store over the same database that records every query's name."""
    settings, _ = fleet
    names: list[str] = []
    transport = ChdbTransport(
        chdb_dir, settings.clickhouse_database, query_timeout_s=settings.query_timeout_s
    )
    store = Store(transport, observer=lambda name, _s, _ok: names.append(name))
    with TestClient(create_app(settings, store=store), client=LOOPBACK) as client:
        yield client, names
    store.close()


def test_the_overview_reads_the_hourly_rollup_once_and_shows_what_the_pages_show(
    observed: tuple[TestClient, list[str]], fleet: tuple[Settings, Store]
) -> None:
    client, names = observed
    store = client.app.state.store  # type: ignore[attr-defined]
    end = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%MZ")
    params = {"window": "24h", "end": end}
    forget(store)
    names.clear()
    overview = client.get("/index.json", params=params).json()
    assert names.count("fleet.gpu_hour_rows") == 1
    assert "fleet.gpu_rows" not in names and "findings.gpu_hours" not in names
    forget(store)
    fleet_page = client.get("/fleet.json", params=params).json()
    forget(store)
    findings_page = client.get("/findings.json", params=params).json()
    assert overview["totals"] == fleet_page["fleet"]["totals"]
    # The fleet's GPU-hours kept (by the fleet page), the findings not: the findings read
    # their own grouped query, and the page is the same.
    forget(store)
    client.get("/fleet.json", params=params)
    names.clear()
    assert client.get("/index.json", params=params).json() == overview
    assert "findings.gpu_hours" in names and "fleet.gpu_hour_rows" not in names
    assert overview["findings_total"] == len([v for v in findings_page["findings"] if not v["muted"]]) > 0
    top = [v["finding"] for v in findings_page["findings"] if not v["muted"]][:5]
    assert [v["finding"] for v in overview["top_findings"]] == top
