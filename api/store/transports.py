"""The two ways to reach ClickHouse. Both speak the same SQL with server-side bound
parameters (`{name:Type}`) and take inserts as Arrow tables; nothing above this module
knows which one is in use.
"""

from __future__ import annotations

import logging
import math
import queue
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

log = logging.getLogger(__name__)


class Transport(Protocol):
    def select(self, sql: str, params: Mapping[str, Any], settings: Mapping[str, Any]) -> pa.Table: ...

    def execute(self, sql: str, params: Mapping[str, Any], settings: Mapping[str, Any]) -> None: ...

    def insert(self, table: str, batch: pa.Table, settings: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


# --- chDB (embedded) ------------------------------------------------------------------

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _quote(value: Any) -> str:
    """A value inside an Array/Tuple parameter, in ClickHouse's quoted text form."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.translate(_ESCAPES).replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_quote(v) for v in value) + "]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def format_param(value: Any) -> str:
    """A query parameter in the text form ClickHouse parses for `{name:Type}`.

    Top-level strings use the escaped (TSV) form; arrays and tuples the quoted form.
    Datetimes are written in UTC.
    """
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, list | tuple):
        return _quote(list(value))
    return _scalar(value)


class ChdbTransport:
    """chDB in this process, its data under `path`.

    One embedded ClickHouse per process can exist (a chDB limit): every ChdbTransport in
    a process must use the same path. It holds `connections` connections to it, each with
    its own current database; a call takes whichever is free, so a dashboard query and an
    ingest insert (or two of a page's queries) run at the same time — chDB releases the GIL
    while a query runs. One connection serves one call at a time: they are not re-entrant.
    """

    def __init__(self, path: Path, database: str, *, query_timeout_s: float, connections: int = 2) -> None:
        import chdb  # imported here: importing chDB loads the whole engine

        path.mkdir(parents=True, exist_ok=True)
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._count = max(1, connections)
        for _ in range(self._count):
            try:
                conn = chdb.connect(str(path))
            except Exception as exc:  # chDB raises bare RuntimeError/ChdbError
                raise RuntimeError(
                    f"cannot open the embedded store at {path}: {exc}. Only one embedded store "
                    "path can be open in a process."
                ) from exc
            conn.query(f"CREATE DATABASE IF NOT EXISTS {database}")
            conn.query(f"USE {database}")
            conn.query(f"SET max_execution_time = {float(query_timeout_s)}")
            self._idle.put(conn)
        self.database = database

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        conn = self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put(conn)

    def select(self, sql: str, params: Mapping[str, Any], settings: Mapping[str, Any]) -> pa.Table:
        text = {k: format_param(v) for k, v in params.items()}
        with self._connection() as conn:
            try:
                result = conn.query(sql, "ArrowTable", params=text or None)
            except Exception:
                # chDB 4.4: after a query fails while producing Arrow output, the next Arrow
                # result on the same connection can come back corrupted; a plain query clears it.
                conn.query("SELECT 1", "CSV")
                raise
        return result if isinstance(result, pa.Table) else pa.table({})

    def execute(self, sql: str, params: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        text = {k: format_param(v) for k, v in params.items()}
        with self._connection() as conn:
            conn.query(sql, "CSV", params=text or None)

    def insert(self, table: str, batch: pa.Table, settings: Mapping[str, Any]) -> None:
        columns = ", ".join(batch.column_names)
        clause = ", ".join(f"{k} = {_setting(v)}" for k, v in settings.items())
        sql = f"INSERT INTO {table} ({columns})"
        if clause:
            sql += f" SETTINGS {clause}"
        # chDB's Python() table function reads the local variable named here.
        sql += " SELECT * FROM Python(batch)"
        with self._connection() as conn:
            conn.query(sql, "CSV")

    def close(self) -> None:
        """Close every connection, waiting for those in use to be given back."""
        count, self._count = self._count, 0  # a second close has nothing left to wait for
        for _ in range(count):
            conn = self._idle.get()
            try:
                conn.close()
            except Exception:  # closing twice or after a failed query
                log.debug("chdb close failed", exc_info=True)


def _setting(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return _scalar(value)


# --- ClickHouse server over HTTP ----------------------------------------------------------


class HttpTransport:
    """A ClickHouse server through clickhouse-connect (HTTP). Not exercised by the test
    suite, which has no ClickHouse server; it is a thin pass-through of the same SQL."""

    def __init__(self, url: str, database: str, *, query_timeout_s: float) -> None:
        import clickhouse_connect

        bootstrap = clickhouse_connect.get_client(dsn=url, database="default")
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        bootstrap.close()
        self._client = clickhouse_connect.get_client(
            dsn=url,
            database=database,
            settings={"max_execution_time": query_timeout_s},
            autogenerate_session_id=False,
        )
        self.database = database

    def select(self, sql: str, params: Mapping[str, Any], settings: Mapping[str, Any]) -> pa.Table:
        return self._client.query_arrow(sql, parameters=dict(params), settings=dict(settings))

    def execute(self, sql: str, params: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        self._client.command(sql, parameters=dict(params), settings=dict(settings))

    def insert(self, table: str, batch: pa.Table, settings: Mapping[str, Any]) -> None:
        self._client.insert_arrow(table, batch, settings=dict(settings))

    def close(self) -> None:
        self._client.close()
