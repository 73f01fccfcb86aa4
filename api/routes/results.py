"""Results computed from many rollup rows (the fleet's GPU-hours, the findings), kept while
the data they were computed from is unchanged.

An entry is keyed by what it was computed from (the window, the thresholds) and by the
store's data version: the set of active parts of the tables read. ClickHouse parts are
immutable, and every insert, merge or mutation replaces some, so a result is never served
after the data under it changed; a live server taking telemetry every few seconds
recomputes on most views, one idle between batches (or a page reloaded) does not. At most
`size` entries per store, least recently used first out. Off in cluster mode: another
shard's inserts do not show in this node's parts.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from api.findings.engine import run_findings
from api.findings.hour_rows import HourRows
from api.findings.model import Finding
from api.settings import Settings
from api.store import Store
from api.store.sql.findings import DATA_VERSION, READ_BY_FINDINGS
from api.timewindow import Window

T = TypeVar("T")


class ResultCache:
    """A bounded, thread-safe map from a key to a computed result."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


_KEPT: WeakKeyDictionary[Store, ResultCache] = WeakKeyDictionary()
_KEPT_LOCK = threading.Lock()


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
    with _KEPT_LOCK:
        cache = _KEPT.get(store)
        if cache is None:
            cache = _KEPT[store] = ResultCache()
    return cache.get((*key, data_version(store, tables)), compute)


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
    with _KEPT_LOCK:
        _KEPT.pop(store, None)
