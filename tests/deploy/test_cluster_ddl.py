"""Cluster-mode DDL: every statement of every migration, rewritten by `cluster_transform`,
checked by hand-written rules and parsed by chDB; and the rewritten schema run in chDB as a
one-shard cluster to show that rows inserted through the Distributed tables reach every rollup.

chDB runs in a subprocess (`chdb_runner.py`): one embedded ClickHouse per process, and the
store fixtures of other tests may already own this process's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.store import cluster as cluster_module
from api.store.cluster import UnsupportedStatement, cluster_transform
from api.store.migrate import CREATE_MIGRATIONS_TABLE, load_migrations, statements

RUNNER = Path(__file__).with_name("chdb_runner.py")
CLUSTER, DATABASE = "iw", "inferwatch"
TEMPLATE = {"raw_ttl_days": 30, "rollup_ttl_days": 400}

_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\s*\(.*?\)\s*ENGINE\s*=\s*(\w+)", re.S)
_VIEW = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\s.*\bFROM (\w+)", re.S)


def _chdb(job: dict) -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(RUNNER)], input=json.dumps(job), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _formatted(sqls: list[str]) -> list[str]:
    results = _chdb({"mode": "parse", "statements": sqls})
    bad = [(sql[:200], r["out"][:300]) for sql, r in zip(sqls, results, strict=True) if not r["ok"]]
    assert not bad, bad
    return [r["out"] for r in results]


@pytest.fixture(scope="module")
def originals() -> list[str]:
    """Every statement migrate() runs, in order: the migrations table, then each file's."""
    found = [CREATE_MIGRATIONS_TABLE.sql.strip()]
    for migration in load_migrations():
        found += statements(migration.text, TEMPLATE)
    return found


@pytest.fixture(scope="module")
def rewritten(originals: list[str]) -> list[list[str]]:
    transform = cluster_transform(CLUSTER, DATABASE)
    return [transform(sql) for sql in originals]


@pytest.fixture(scope="module")
def formatted(originals: list[str], rewritten: list[list[str]]) -> dict[str, str]:
    """chDB's single-line form of every original and generated statement."""
    sqls = originals + [sql for group in rewritten for sql in group]
    return dict(zip(sqls, _formatted(sqls), strict=True))


# --- known answers -------------------------------------------------------------------------------


def test_a_small_table_becomes_a_replicated_local_table_and_a_distributed_table() -> None:
    sql = (
        "CREATE TABLE IF NOT EXISTS gpu_samples\n"
        "(\n    time DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),\n"
        "    cluster LowCardinality(String),\n    host LowCardinality(String)\n)\n"
        "ENGINE = ReplacingMergeTree\nORDER BY (cluster, host, time)\n"
        "SETTINGS non_replicated_deduplication_window = 10000"
    )
    columns = (
        "(\n    time DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),\n"
        "    cluster LowCardinality(String),\n    host LowCardinality(String)\n)"
    )
    assert cluster_transform("prod", "iw")(sql) == [
        "CREATE TABLE IF NOT EXISTS iw.gpu_samples_local ON CLUSTER 'prod'\n" + columns + "\n"
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/iw/gpu_samples_local', '{replica}')\n"
        "ORDER BY (cluster, host, time)\nSETTINGS replicated_deduplication_window = 10000",
        "CREATE TABLE IF NOT EXISTS iw.gpu_samples ON CLUSTER 'prod' AS iw.gpu_samples_local\n"
        "ENGINE = Distributed('prod', 'iw', 'gpu_samples_local', cityHash64(cluster, host))",
    ]


def test_engine_arguments_follow_the_replication_path_and_replica() -> None:
    sql = "CREATE TABLE requests (span_id String, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY span_id"
    local, distributed = cluster_transform("prod", "iw")(sql)
    assert (
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/iw/requests_local', '{replica}', v)" in local
    )
    assert local.startswith("CREATE TABLE iw.requests_local ON CLUSTER 'prod'")
    assert distributed.endswith("Distributed('prod', 'iw', 'requests_local', cityHash64(span_id))")


def test_a_view_reads_the_local_raw_table_and_writes_the_local_rollup() -> None:
    sql = (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS engine_minute_mv TO engine_minute AS\n"
        "SELECT toStartOfMinute(time) AS minute, count() AS n\nFROM engine_metrics\nGROUP BY minute"
    )
    assert cluster_transform("prod", "iw")(sql) == [
        "CREATE MATERIALIZED VIEW IF NOT EXISTS iw.engine_minute_mv ON CLUSTER 'prod' "
        "TO iw.engine_minute_local AS\n"
        "SELECT toStartOfMinute(time) AS minute, count() AS n\nFROM iw.engine_metrics_local\nGROUP BY minute"
    ]


def test_adding_a_column_alters_the_local_tables_before_the_distributed_table() -> None:
    action = "ADD COLUMN IF NOT EXISTS lora LowCardinality(String) AFTER model"
    assert cluster_transform("prod", "iw")(f"ALTER TABLE requests {action}") == [
        f"ALTER TABLE iw.requests_local ON CLUSTER 'prod' {action}",
        f"ALTER TABLE iw.requests ON CLUSTER 'prod' {action}",
    ]


def test_dropping_a_table_drops_its_distributed_table_then_its_local_tables() -> None:
    assert cluster_transform("prod", "iw")("DROP TABLE IF EXISTS gpu_hour") == [
        "DROP TABLE IF EXISTS iw.gpu_hour ON CLUSTER 'prod' SYNC",
        "DROP TABLE IF EXISTS iw.gpu_hour_local ON CLUSTER 'prod' SYNC",
    ]
    assert cluster_transform("prod", "iw")("DROP VIEW IF EXISTS gpu_hour_mv") == [
        "DROP VIEW IF EXISTS iw.gpu_hour_mv ON CLUSTER 'prod'"
    ]


def test_a_backfill_runs_once_through_the_distributed_tables() -> None:
    sql = "INSERT INTO findings_gpu_hour (hour, a)\nSELECT hour, max(b) FROM gpu_hour GROUP BY hour"
    assert cluster_transform("prod", "iw")(sql) == [
        "INSERT INTO iw.findings_gpu_hour (hour, a)\nSELECT hour, max(b) FROM iw.gpu_hour GROUP BY hour"
    ]


# --- every statement of every migration ------------------------------------------------------------


def test_every_migration_table_becomes_a_replicated_local_table_of_the_same_kind(
    originals: list[str], rewritten: list[list[str]], formatted: dict[str, str]
) -> None:
    tables = 0
    for original, generated in zip(originals, rewritten, strict=True):
        match = _TABLE.match(original)
        if match is None or match.group(1) == "schema_migrations":
            continue
        name, kind = match.groups()
        tables += 1
        assert len(generated) == 2, generated
        local, distributed = (formatted[sql] for sql in generated)
        # The local table is the original table with only its name, ON CLUSTER, the engine and
        # the deduplication setting changed: compare chDB's normalised forms.
        expected = formatted[original].replace(
            f"CREATE TABLE IF NOT EXISTS {name} (",
            f"CREATE TABLE IF NOT EXISTS {DATABASE}.{name}_local ON CLUSTER {CLUSTER} (",
            1,
        )
        expected = expected.replace(
            f"ENGINE = {kind} ",
            f"ENGINE = Replicated{kind}("
            f"'/clickhouse/tables/{{shard}}/{DATABASE}/{name}_local', '{{replica}}') ",
            1,
        )
        expected = expected.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
        assert local == expected
        assert "non_replicated" not in local
        key = ", ".join(cluster_module.SHARDING_KEYS[name])
        assert distributed == (
            f"CREATE TABLE IF NOT EXISTS {DATABASE}.{name} ON CLUSTER {CLUSTER} AS {DATABASE}.{name}_local "
            f"ENGINE = Distributed('{CLUSTER}', '{DATABASE}', '{name}_local', cityHash64({key}))"
        )
    assert tables >= 7  # 3 raw tables and 4 rollups when this was written


def test_every_migration_view_reads_local_raw_rows_and_writes_the_local_rollup(
    originals: list[str], rewritten: list[list[str]], formatted: dict[str, str]
) -> None:
    views = 0
    for original, generated in zip(originals, rewritten, strict=True):
        match = _VIEW.match(original)
        if match is None:
            continue
        name, target, source = match.groups()
        views += 1
        assert len(generated) == 1
        head_before = f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} TO {target} AS "
        head_after = (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.{name} ON CLUSTER {CLUSTER} "
            f"TO {DATABASE}.{target}_local AS "
        )
        before = formatted[original]
        assert before.startswith(head_before) and before.count(f" FROM {source} ") == 1
        expected = before.replace(head_before, head_after, 1).replace(
            f" FROM {source} ", f" FROM {DATABASE}.{source}_local ", 1
        )
        assert formatted[generated[0]] == expected
    assert views >= 4


def test_migrations_table_is_one_replica_set_on_every_node(
    rewritten: list[list[str]], formatted: dict[str, str]
) -> None:
    database, table = (formatted[sql] for sql in rewritten[0])
    assert database == f"CREATE DATABASE IF NOT EXISTS {DATABASE} ON CLUSTER {CLUSTER}"
    assert table.startswith(f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations ON CLUSTER {CLUSTER} (")
    # No {shard} in the path: every node of every shard holds the same rows, so the replica
    # name has to be unique across shards.
    assert (
        f"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{DATABASE}/schema_migrations', "
        "'{shard}-{replica}') ORDER BY version"
    ) in table
    assert not any("schema_migrations" in sql for group in rewritten[1:] for sql in group)


def test_every_generated_statement_runs_on_the_cluster_in_the_named_database(
    rewritten: list[list[str]],
) -> None:
    head = re.compile(
        r"^(?:CREATE (?:DATABASE|TABLE|MATERIALIZED VIEW) IF NOT EXISTS|ALTER TABLE"
        r"|DROP (?:VIEW|TABLE) IF EXISTS) "
        rf"{DATABASE}(?:\.\w+)? ON CLUSTER '{CLUSTER}'(?:[\s(]|$)"
    )
    # A backfill runs once, through the Distributed tables (no ON CLUSTER: each node would copy).
    backfill = re.compile(
        rf"^INSERT INTO {DATABASE}\.\w+ \([^()]*\)\nSELECT\s.*\sFROM {DATABASE}\.\w+(?:\s|$)", re.S
    )
    for group in rewritten:
        for sql in group:
            assert head.match(sql) or backfill.match(sql), sql[:200]


# --- the schema at work: a one-shard cluster in chDB ------------------------------------------------

_CHDB_CONFIG = """<clickhouse>
  <tcp_port>9000</tcp_port>
  <macros><shard>01</shard><replica>r1</replica></macros>
  <remote_servers>
    <iw><shard><internal_replication>true</internal_replication>
      <replica><host>localhost</host><port>9000</port></replica>
    </shard></iw>
  </remote_servers>
</clickhouse>
"""


def _without_replication(sql: str) -> str:
    """What chDB can run: Replicated* engines need ClickHouse Keeper (chDB's tables stay
    read-only without it) and ON CLUSTER needs the distributed DDL queue of a server. Both
    are undone here; Distributed tables and views on the local tables stay as generated."""
    sql = sql.replace(f" ON CLUSTER '{CLUSTER}'", "")
    sql = re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'(?:, )?", r"\1(", sql)
    return re.sub(r"\breplicated_deduplication_window\b", "non_replicated_deduplication_window", sql)


def test_rows_inserted_through_distributed_tables_reach_every_rollup_once(
    rewritten: list[list[str]], tmp_path: Path
) -> None:
    config = tmp_path / "cluster.xml"
    config.write_text(_CHDB_CONFIG)
    minute = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None) - timedelta(minutes=10)

    def at(seconds: float) -> str:
        return (minute + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")

    retried = (
        "INSERT INTO inferwatch.gpu_samples (time, cluster, host, gpu_uuid, util_gpu_pct) "
        "SETTINGS insert_deduplicate = 1, insert_deduplication_token = '0123456789abcdef', "
        "deduplicate_blocks_in_dependent_materialized_views = 1 "
        f"VALUES ('{at(4)}', 'c', 'h1', 'g1', 20)"
    )
    ddl = [_without_replication(sql) for group in rewritten for sql in group]
    work = [
        "INSERT INTO inferwatch.gpu_samples (time, cluster, host, gpu_uuid, util_gpu_pct) VALUES "
        f"('{at(1)}', 'c', 'h1', 'g1', 10), ('{at(2)}', 'c', 'h1', 'g1', 50), "
        f"('{at(3)}', 'c', 'h1', 'g1', 30)",
        retried,
        retried,  # a collector's retry of the same batch
        "INSERT INTO inferwatch.requests "
        "(time, end_time, span_id, cluster, host, deployment, model, e2e_s, gpu_uuids) "
        f"VALUES ('{at(5)}', '{at(7)}', 's1', 'c', 'h1', 'chat', 'm', 2.0, ['g1']), "
        f"('{at(10)}', '{at(13)}', 's2', 'c', 'h1', 'chat', 'm', 3.0, ['g1'])",
        "INSERT INTO inferwatch.engine_metrics "
        "(time, cluster, host, deployment, instance, engine, metric, le, value) "
        f"VALUES ('{at(1)}', 'c', 'h1', 'chat', 'i', 'vllm', 'running', 0, 3), "
        f"('{at(6)}', 'c', 'h1', 'chat', 'i', 'vllm', 'running', 0, 5)",
        "SELECT count() FROM inferwatch.gpu_samples",
        "SELECT sum(samples), max(util_gpu_max), sum(util_gpu_sum) "
        "FROM inferwatch.gpu_minute GROUP BY gpu_uuid",
        "SELECT sum(requests), sum(e2e_sum) FROM inferwatch.deployment_minute GROUP BY deployment",
        "SELECT sum(busy_s), sum(requests) FROM inferwatch.inflight_minute GROUP BY gpu_uuid",
        "SELECT sum(n), sum(value_sum), max(value_max) FROM inferwatch.engine_minute GROUP BY metric",
        "SELECT count() FROM inferwatch.gpu_samples_local",
    ]
    results = _chdb(
        {
            "mode": "execute",
            "connect": f"file:{tmp_path / 'data'}?config-file={config}",
            "statements": ddl + work,
        }
    )
    failed = [(sql[:160], r["out"][:300]) for sql, r in zip(ddl + work, results, strict=True) if not r["ok"]]
    assert not failed, failed
    answers = [r["out"] for r in results[-6:]]
    assert answers == [
        "4",  # 3 samples + the retried one, stored once
        "4\t50\t110",  # samples, max utilisation, 10 + 50 + 30 + 20
        "2\t5",  # two requests, 2 s + 3 s end to end
        "5\t2",  # g1 busy 2 s + 3 s in that minute
        "2\t8\t5",
        "4",  # the rows are in the local table the Distributed table routed them to
    ]


# --- what it refuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (a UInt8) ENGINE = Memory",
        "CREATE TABLE gpu_samples (a UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a",
        "CREATE TABLE gpu_samples ON CLUSTER x (a UInt8) ENGINE = MergeTree ORDER BY a",
        "CREATE TABLE other.gpu_samples (cluster String, host String) ENGINE = MergeTree ORDER BY cluster",
        "CREATE TABLE brand_new (a UInt8) ENGINE = MergeTree ORDER BY a",
        "CREATE TABLE gpu_samples (cluster String, host String ENGINE = MergeTree ORDER BY cluster",
        "CREATE TABLE gpu_samples (cluster String, host String) ENGINE = MergeTree",
        "CREATE TABLE gpu_samples AS other",
        "CREATE VIEW v AS SELECT 1",
        "CREATE MATERIALIZED VIEW v ENGINE = MergeTree ORDER BY a AS SELECT a FROM gpu_samples",
        "CREATE MATERIALIZED VIEW v TO gpu_minute AS SELECT a FROM gpu_samples JOIN hosts USING host",
        "CREATE MATERIALIZED VIEW v TO gpu_minute AS SELECT a FROM (SELECT a FROM gpu_samples)",
        "CREATE MATERIALIZED VIEW v TO gpu_minute AS SELECT a FROM other.gpu_samples",
        "CREATE MATERIALIZED VIEW v TO schema_migrations AS SELECT 1 AS version FROM gpu_samples",
        "INSERT INTO gpu_samples VALUES (1)",
        "ALTER TABLE gpu_samples DELETE WHERE 1",
        "OPTIMIZE TABLE gpu_samples FINAL",
        "DROP TABLE gpu_samples",
        "DROP TABLE IF EXISTS schema_migrations",
        "DROP DATABASE IF EXISTS inferwatch",
        "INSERT INTO gpu_minute SELECT * FROM gpu_samples JOIN hosts USING host",
        "INSERT INTO gpu_minute SELECT * FROM (SELECT * FROM gpu_samples)",
    ],
)
def test_a_statement_it_does_not_understand_fails_loudly(sql: str) -> None:
    with pytest.raises(UnsupportedStatement):
        cluster_transform("prod", "iw")(sql)


def test_a_sharding_key_outside_the_sort_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Duplicates must land on one shard: the key may only hash sorting-key columns.
    monkeypatch.setitem(cluster_module.SHARDING_KEYS, "gpu_samples", ("gpu_name",))
    sql = (
        "CREATE TABLE gpu_samples (cluster String, host String, gpu_name String) "
        "ENGINE = MergeTree ORDER BY (cluster, host)"
    )
    with pytest.raises(UnsupportedStatement, match="sharding key"):
        cluster_transform("prod", "iw")(sql)


def test_every_sharding_key_hashes_columns_of_its_tables_sort_key(originals: list[str]) -> None:
    created = {}
    for sql in originals:
        match = re.match(r"CREATE TABLE IF NOT EXISTS (\w+).*\bORDER BY\s+\(?([^)\n]*)", sql, re.S)
        if match:
            created[match.group(1)] = {c.strip() for c in match.group(2).split(",")}
    for table, key in cluster_module.SHARDING_KEYS.items():
        assert table in created, f"SHARDING_KEYS names {table}, which no migration creates"
        assert set(key) <= created[table], (table, key, created[table])


@pytest.mark.parametrize(("cluster", "database"), [("prod'; DROP", "iw"), ("prod", "iw db"), ("", "iw")])
def test_cluster_and_database_must_be_plain_identifiers(cluster: str, database: str) -> None:
    with pytest.raises(ValueError):
        cluster_transform(cluster, database)
