"""Results kept per data version (`api.routes.results`): computed once while the rollups are
unchanged, again after any insert, and never more than `size` results kept."""

from __future__ import annotations

from collections.abc import Callable

from api.routes.results import data_version, kept
from api.settings import Settings
from api.store import Store
from api.store.gateway import Query
from api.store.kept import ResultCache
from api.store.sql.findings import READ_BY_FINDINGS

INSERT = Query(
    "test.insert",
    "INSERT INTO engine_minute (minute, cluster, deployment, host, instance, metric, le, engine, "
    "value_min, value_max, value_sum, n) VALUES (now(), 'c', 'd', 'h', 'i', 'requests_running', 0, "
    "'vllm', 1, 2, 3, 2)",
)


def counter() -> tuple[list[int], Callable[[], int]]:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    return calls, compute


def test_a_result_is_computed_once_per_data_version(settings: Settings, store: Store) -> None:
    calls, compute = counter()
    before = data_version(store, READ_BY_FINDINGS)

    def cached(key: tuple[str, int], compute: Callable[[], int]) -> int:
        return kept(store, settings, key, READ_BY_FINDINGS, compute)

    assert cached(("findings", 1), compute) == 1
    assert cached(("findings", 1), compute) == 1  # same data: kept
    assert cached(("findings", 2), compute) == 2  # another window
    store.execute(INSERT)
    assert data_version(store, READ_BY_FINDINGS) != before
    assert cached(("findings", 1), compute) == 3  # new rows: computed again
    assert len(calls) == 3


def test_the_least_recently_used_result_goes_first() -> None:
    cache = ResultCache(size=2)
    calls, compute = counter()
    cache.get("a", compute)
    cache.get("b", compute)
    cache.get("a", compute)  # a is now the most recent
    cache.get("c", compute)  # b goes
    assert len(cache) == 2 and len(calls) == 3
    cache.get("a", compute)
    assert len(calls) == 3
    cache.get("b", compute)
    assert len(calls) == 4
