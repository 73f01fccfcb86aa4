"""The embedded store's connections: a slow query does not hold up the next call."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from api.settings import Settings
from api.store import Query, Store
from api.store.transports import ChdbTransport

SLOW = Query("test.slow", "SELECT sleep(2) AS s")
QUICK = Query("test.quick", "SELECT 41 + 1 AS answer")


def test_a_call_runs_while_another_connection_is_busy(store: Store) -> None:
    slow = threading.Thread(target=store.rows, args=(SLOW,))
    slow.start()
    try:
        # The slow query sleeps for 2 s on one connection; the quick one takes the other.
        assert store.rows(QUICK) == [{"answer": 42}]
        assert slow.is_alive(), "the quick query waited for the slow one"
    finally:
        slow.join()


def test_with_one_connection_calls_wait_their_turn(settings: Settings, chdb_dir: Path) -> None:
    one = Store(ChdbTransport(chdb_dir, settings.clickhouse_database, query_timeout_s=30, connections=1))
    slow = threading.Thread(target=one.rows, args=(SLOW,))
    slow.start()
    try:
        time.sleep(0.5)  # let the slow query take the connection first
        assert one.rows(QUICK) == [{"answer": 42}]
        assert not slow.is_alive()  # the only connection was the slow query's until it ended
    finally:
        slow.join()
        one.close()
        one.close()  # a second close returns at once
