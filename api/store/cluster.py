"""ClickHouse cluster mode: rewrite our single-node DDL into replicated, sharded DDL.

With `INFERWATCH_CLICKHOUSE_CLUSTER` set, `migrate()` passes every statement through the
function `cluster_transform(cluster, database)` returns. Where a statement goes:

- ``CREATE TABLE t`` (a raw table or a rollup) becomes two tables, both ``ON CLUSTER``:
  ``t_local``, a ``Replicated*MergeTree`` of the same kind on every node, holding one
  shard's rows; and ``t``, a ``Distributed`` table over all the ``t_local`` tables. The
  rest of inferwatch keeps using the name ``t``: inserts go through the Distributed table,
  which routes each row to a shard by the table's sharding key, and reads fan out to every
  shard.
- ``CREATE MATERIALIZED VIEW v TO r AS SELECT ... FROM t`` becomes a view on every node that
  reads ``t_local`` and writes ``r_local``. A view fires on the node where a block lands, so
  each shard rolls up its own rows; the rollup's Distributed table then reads every shard's
  partial aggregates, which queries re-aggregate (they always ``GROUP BY``; never rely on
  ``FINAL`` alone to merge a rollup key, which may exist on several shards).
- ``DROP VIEW IF EXISTS v`` and ``DROP TABLE IF EXISTS t`` run ``ON CLUSTER``; a table goes
  with its ``t_local`` tables (the Distributed table first, so nothing routes rows to a
  dropped shard table).
- ``INSERT INTO r (...) SELECT ... FROM t ...`` (a backfill between rollups) runs once,
  through the Distributed tables: it reads every shard and the sharding key routes each
  row to the shard where the views would have written it.
- ``schema_migrations`` is one replicated table on every node (all nodes in one replica
  set, no Distributed table), so any node answers which migrations ran cluster-wide. The
  statement that creates it is preceded by ``CREATE DATABASE ... ON CLUSTER``.

Sharding keys hash columns of the table's sorting key, so that a row and its duplicate (a
batch retried by a collector) land on the same shard, where insert deduplication and
ReplacingMergeTree merges can see both. Every table must have an entry in
`SHARDING_KEYS`: a new table fails the migration until someone decides how it is sharded.

This is a string transform over the DDL shape our migrations use, not a SQL parser. Anything
it does not recognise raises `UnsupportedStatement` rather than running unreplicated.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["SHARDING_KEYS", "UnsupportedStatement", "cluster_transform"]

SHARDING_KEYS: dict[str, tuple[str, ...]] = {
    # Raw tables. A host's samples and scrapes stay together, so their per-host rollups
    # are complete on one shard; requests spread evenly by span.
    "gpu_samples": ("cluster", "host"),
    "requests": ("span_id",),
    "requests_rekey": ("span_id",),  # 0006 copies requests aside while it changes the sort key
    "engine_metrics": ("cluster", "host"),
    # Rollups are written by the views on each shard, never through their Distributed
    # table; the key only matters for a manual backfill through it.
    "gpu_minute": ("cluster", "host"),
    "deployment_minute": ("cluster", "deployment"),
    "inflight_minute": ("cluster", "host"),
    "engine_minute": ("cluster", "host"),
    # Hourly rollups, filled by views on the minute rollups (so on the shard that holds
    # the minute rows): the findings' (0003) and the dashboards' (0004).
    "findings_gpu_hour": ("cluster", "host"),
    "findings_fleet_5m": ("cluster", "deployment"),
    "findings_deployment_hour": ("cluster", "deployment"),
    "findings_deployment_day": ("cluster", "deployment"),
    "findings_engine_hour": ("cluster", "host"),
    "gpu_hour": ("cluster", "host"),
    "deployment_hour": ("cluster", "deployment"),
    "engine_hour": ("cluster", "host"),
}
"""Columns hashed (cityHash64) to pick a shard, per table. Each must be in the table's ORDER BY."""

MIGRATIONS_TABLE = "schema_migrations"
LOCAL_SUFFIX = "_local"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MERGE_TREE_KINDS = frozenset(
    {
        "MergeTree",
        "ReplacingMergeTree",
        "AggregatingMergeTree",
        "SummingMergeTree",
        "CollapsingMergeTree",
        "VersionedCollapsingMergeTree",
    }
)
_CREATE_TABLE = re.compile(
    r"CREATE\s+TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>[A-Za-z_]\w*)\s*\(", re.I
)
_ENGINE = re.compile(r"\s*ENGINE\s*=\s*(?P<engine>[A-Za-z_]\w*)\s*", re.I)
_CREATE_MV = re.compile(
    r"CREATE\s+MATERIALIZED\s+VIEW\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>[A-Za-z_]\w*)\s+"
    r"TO\s+(?P<target>[A-Za-z_]\w*)\s+AS\s+(?P<select>SELECT\b.*)",
    re.I | re.S,
)
_ALTER_COLUMNS = re.compile(
    r"ALTER\s+TABLE\s+(?P<name>[A-Za-z_]\w*)\s+(?P<action>(?:ADD|DROP|MODIFY|COMMENT)\s+COLUMN\b.*)",
    re.I | re.S,
)
_FROM = re.compile(r"\bFROM\s+(?P<source>\(|[A-Za-z_][\w.]*)", re.I)
_JOIN = re.compile(r"(?P<before>[A-Za-z_]\w*)\s+JOIN\b", re.I)
_ORDER_BY = re.compile(
    r"\bORDER\s+BY\s+(?P<key>.*?)(?=\s+(?:PRIMARY\s+KEY|SAMPLE\s+BY|TTL|SETTINGS)\b|$)", re.I | re.S
)
_DROP = re.compile(r"DROP\s+(?P<kind>VIEW|TABLE)\s+IF\s+EXISTS\s+(?P<name>[A-Za-z_]\w*)", re.I)
_INSERT_SELECT = re.compile(
    r"INSERT\s+INTO\s+(?P<target>[A-Za-z_]\w*)\s*(?P<columns>\([^()]*\))?\s*(?P<select>SELECT\b.*)",
    re.I | re.S,
)
_ON_CLUSTER = re.compile(r"\bON\s+CLUSTER\b", re.I)
_WORD = re.compile(r"[A-Za-z_]\w*")


class UnsupportedStatement(ValueError):
    """A migration statement the cluster transform does not know how to replicate."""


def cluster_transform(cluster: str, database: str) -> Callable[[str], list[str]]:
    """The rewrite `migrate()` applies to each statement in cluster mode.

    `cluster` is a name from the servers' `remote_servers` config; `database` the database
    every table lives in. The result maps one statement to the statements to run, in order.
    Replication paths use the `{shard}` and `{replica}` macros each node defines.
    """
    for label, value in (("cluster", cluster), ("database", database)):
        if not _IDENTIFIER.match(value):
            raise ValueError(f"{label} must be a plain identifier, got {value!r}")

    def transform(statement: str) -> list[str]:
        sql = statement.strip().rstrip(";").strip()
        if _ON_CLUSTER.search(sql):
            raise UnsupportedStatement(f"statement already names a cluster: {_head(sql)}")
        if _CREATE_TABLE.match(sql):
            return _create_table(sql, cluster, database)
        if _CREATE_MV.fullmatch(sql):
            return _create_view(sql, cluster, database)
        if _ALTER_COLUMNS.fullmatch(sql):
            return _alter_columns(sql, cluster, database)
        if _DROP.fullmatch(sql):
            return _drop(sql, cluster, database)
        if _INSERT_SELECT.fullmatch(sql):
            return _insert_select(sql, database)
        raise UnsupportedStatement(
            "cluster mode knows CREATE TABLE, CREATE MATERIALIZED VIEW ... TO, ALTER TABLE "
            "... ADD/DROP/MODIFY/COMMENT COLUMN, DROP VIEW/TABLE IF EXISTS and INSERT ... SELECT; "
            f"extend api/store/cluster.py for: {_head(sql)}"
        )

    return transform


# --- CREATE TABLE ------------------------------------------------------------------------------


def _create_table(sql: str, cluster: str, database: str) -> list[str]:
    head = _CREATE_TABLE.match(sql)
    assert head is not None
    name, if_not_exists = head.group("name"), head.group("ine") is not None
    columns_end = _closing_paren(sql, head.end() - 1)
    columns = sql[head.end() - 1 : columns_end + 1]
    engine_match = _ENGINE.match(sql, columns_end + 1)
    if engine_match is None:
        raise UnsupportedStatement(f"CREATE TABLE {name}: expected ENGINE = ... after the columns")
    kind = engine_match.group("engine")
    if kind not in _MERGE_TREE_KINDS:
        raise UnsupportedStatement(f"CREATE TABLE {name}: cannot replicate engine {kind}")
    rest_start = engine_match.end()
    engine_args = ""
    if sql.startswith("(", rest_start):
        args_end = _closing_paren(sql, rest_start)
        engine_args = sql[rest_start + 1 : args_end].strip()
        rest_start = args_end + 1
    clauses = sql[rest_start:].strip()
    order_by = _ORDER_BY.search(clauses)
    if order_by is None:
        raise UnsupportedStatement(f"CREATE TABLE {name}: no ORDER BY")
    clauses = re.sub(r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window", clauses)
    ine = "IF NOT EXISTS " if if_not_exists else ""

    if name == MIGRATIONS_TABLE:
        # One replica set spanning every node: no {shard} in the path, so the replica name
        # must be unique cluster-wide, which '{shard}-{replica}' is.
        path = f"/clickhouse/tables/all/{database}/{name}"
        engine = _replicated(kind, path, "{shard}-{replica}", engine_args)
        return [
            f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER '{cluster}'",
            f"CREATE TABLE {ine}{database}.{name} ON CLUSTER '{cluster}'\n{columns}\n"
            f"ENGINE = {engine}\n{clauses}",
        ]

    key = SHARDING_KEYS.get(name)
    if key is None:
        raise UnsupportedStatement(
            f"CREATE TABLE {name}: no sharding key; add one to SHARDING_KEYS in api/store/cluster.py"
        )
    sort_columns = set(_WORD.findall(order_by.group("key")))
    if not set(key) <= sort_columns:
        raise UnsupportedStatement(
            f"CREATE TABLE {name}: sharding key {key} must be columns of ORDER BY {order_by.group('key')}"
        )
    local = name + LOCAL_SUFFIX
    path = f"/clickhouse/tables/{{shard}}/{database}/{local}"
    engine = _replicated(kind, path, "{replica}", engine_args)
    return [
        f"CREATE TABLE {ine}{database}.{local} ON CLUSTER '{cluster}'\n{columns}\n"
        f"ENGINE = {engine}\n{clauses}",
        f"CREATE TABLE {ine}{database}.{name} ON CLUSTER '{cluster}' AS {database}.{local}\n"
        f"ENGINE = Distributed('{cluster}', '{database}', '{local}', cityHash64({', '.join(key)}))",
    ]


def _replicated(kind: str, path: str, replica: str, args: str) -> str:
    extra = f", {args}" if args else ""
    return f"Replicated{kind}('{path}', '{replica}'{extra})"


# --- CREATE MATERIALIZED VIEW -------------------------------------------------------------------


def _create_view(sql: str, cluster: str, database: str) -> list[str]:
    match = _CREATE_MV.fullmatch(sql)
    assert match is not None
    name, target, select = match.group("name"), match.group("target"), match.group("select")
    if target == MIGRATIONS_TABLE:
        raise UnsupportedStatement(f"materialized view {name} writes to {MIGRATIONS_TABLE}")
    sources = list(_FROM.finditer(select))
    if len(sources) != 1:
        raise UnsupportedStatement(
            f"materialized view {name}: expected exactly one FROM, found {len(sources)}"
        )
    source = sources[0].group("source")
    if source == "(" or "." in source:
        raise UnsupportedStatement(f"materialized view {name}: FROM must name one table of this database")
    if any(join.group("before").upper() != "ARRAY" for join in _JOIN.finditer(select)):
        raise UnsupportedStatement(f"materialized view {name}: joins are not supported in cluster mode")
    at = sources[0].start("source")
    rewritten = f"{select[:at]}{database}.{source}{LOCAL_SUFFIX}{select[at + len(source) :]}"
    ine = "IF NOT EXISTS " if match.group("ine") else ""
    return [
        f"CREATE MATERIALIZED VIEW {ine}{database}.{name} ON CLUSTER '{cluster}' "
        f"TO {database}.{target}{LOCAL_SUFFIX} AS\n{rewritten}"
    ]


# --- ALTER TABLE ... COLUMN ---------------------------------------------------------------------


def _alter_columns(sql: str, cluster: str, database: str) -> list[str]:
    match = _ALTER_COLUMNS.fullmatch(sql)
    assert match is not None
    name, action = match.group("name"), match.group("action")
    if name == MIGRATIONS_TABLE:
        return [f"ALTER TABLE {database}.{name} ON CLUSTER '{cluster}' {action}"]
    # The local tables first: a Distributed table must never name a column its shards lack.
    return [
        f"ALTER TABLE {database}.{name}{LOCAL_SUFFIX} ON CLUSTER '{cluster}' {action}",
        f"ALTER TABLE {database}.{name} ON CLUSTER '{cluster}' {action}",
    ]


# --- DROP, INSERT ... SELECT ---------------------------------------------------------------------


def _drop(sql: str, cluster: str, database: str) -> list[str]:
    match = _DROP.fullmatch(sql)
    assert match is not None
    kind, name = match.group("kind").upper(), match.group("name")
    if name == MIGRATIONS_TABLE:
        raise UnsupportedStatement(f"refusing to drop {MIGRATIONS_TABLE}")
    head = f"DROP {kind} IF EXISTS {database}.{name}"
    if kind == "VIEW":
        return [f"{head} ON CLUSTER '{cluster}'"]
    # SYNC: an Atomic database otherwise drops a replicated table minutes later, and until
    # then its ZooKeeper path is taken, so a migration that recreates the table would fail.
    return [
        f"{head} ON CLUSTER '{cluster}' SYNC",
        f"{head}{LOCAL_SUFFIX} ON CLUSTER '{cluster}' SYNC",
    ]


def _insert_select(sql: str, database: str) -> list[str]:
    match = _INSERT_SELECT.fullmatch(sql)
    assert match is not None
    target, columns, select = match.group("target"), match.group("columns") or "", match.group("select")
    if target == MIGRATIONS_TABLE:
        raise UnsupportedStatement(f"INSERT into {MIGRATIONS_TABLE} is migrate()'s own")
    sources = list(_FROM.finditer(select))
    if len(sources) != 1 or sources[0].group("source") == "(" or "." in sources[0].group("source"):
        raise UnsupportedStatement(f"INSERT INTO {target} ... SELECT: expected one FROM a table here")
    if any(join.group("before").upper() != "ARRAY" for join in _JOIN.finditer(select)):
        raise UnsupportedStatement(f"INSERT INTO {target} ... SELECT: no joins in cluster mode")
    source, at = sources[0].group("source"), sources[0].start("source")
    rewritten = f"{select[:at]}{database}.{source}{select[at + len(source) :]}"
    return [f"INSERT INTO {database}.{target} {columns}\n{rewritten}".replace(" \n", "\n")]


# --- helpers ----------------------------------------------------------------------------------


def _closing_paren(sql: str, start: int) -> int:
    """Index of the parenthesis closing the one at `start`, skipping quoted text and comments."""
    if sql[start] != "(":
        raise UnsupportedStatement(f"expected '(' at {start}: {_head(sql)}")
    depth = 0
    i = start
    while i < len(sql):
        char = sql[i]
        if char in "'`\"":
            i = _end_of_quoted(sql, i)
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = len(sql) if newline < 0 else newline
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise UnsupportedStatement(f"unbalanced parentheses: {_head(sql)}")


def _end_of_quoted(sql: str, start: int) -> int:
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        if sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            return i
        i += 1
    raise UnsupportedStatement(f"unterminated quoted text: {_head(sql)}")


def _head(sql: str) -> str:
    return " ".join(sql.split())[:120]
