"""Results computed from many rollup rows (the fleet's GPU-hours, the findings), kept while
the data they were computed from is unchanged.

An entry is keyed by what it was computed from (the window, the thresholds) and by the
store's data version: the set of active parts of the tables read. ClickHouse parts are
immutable, and every insert, merge or mutation replaces some, so a result is never served
after the data under it changed; a live server taking telemetry every few seconds
recomputes on most views, one idle between batches (or a page reloaded) does not. Each
store keeps its own (`Store.results`: 16 entries, least recently used first out). Off in
cluster mode: another shard's inserts do not show in this node's parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import TypeVar

from api.findings.engine import run_findings
from api.findings.hour_rows import HourRows
from api.findings.model import Finding
from api.settings import Settings
from api.store import Store
from api.store.sql.findings import DATA_VERSION, READ_BY_FINDINGS
from api.timewindow import Window

T = TypeVar("T")


def data_version(store: Store, tables: tuple[str, ...]) -> tuple[int, int]:
    """The active parts of `tables`, as (a digest of their names, how many)."""
    row = store.rows(DATA_VERSION, tables=list(tables))
    return (int(row[0]["digest"]), int(row[0]["parts"])) if row else (0, 0)


def kept(
    store: Store,
    settings: Settings,
    key: tuple[Hashable, ...],
    tables: tuple[str, ...],
    compute: Callable[[], T],
) -> T:
    """`compute()` for `key` over the current data of `tables`, computed once per version."""
    if settings.clickhouse_cluster:
        return compute()
    return store.results.get((*key, data_version(store, tables)), compute)


def settings_digest(settings: Settings) -> str:
    """What of the settings a finding depends on (thresholds, prices, deployments)."""
    text = settings.findings.model_dump_json() + settings.cost.model_dump_json()
    return hashlib.sha256(text.encode()).hexdigest()


def kept_findings(
    store: Store, settings: Settings, window: Window, *, hour_rows: HourRows | None = None
) -> list[Finding]:
    """Every finding over `window` (aligned by the caller), kept per data version: the findings
    page, the overview and `/api/v1/findings` share one computation. `hour_rows`: the hourly
    GPU rows where the caller read them already (`run_findings`)."""
    key = ("findings", window.start, window.end, settings_digest(settings))
    return kept(
        store,
        settings,
        key,
        READ_BY_FINDINGS,
        lambda: run_findings(store, settings, window, hour_rows=hour_rows),
    )


def forget(store: Store) -> None:
    """Drop what is kept for `store` (benchmarks measure the cost without it)."""
    store.results.clear()
