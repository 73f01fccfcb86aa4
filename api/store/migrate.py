"""ClickHouse schema migrations: numbered `migrations/clickhouse/NNNN_name.sql` files,
applied in order, each recorded in `schema_migrations`. Every statement is idempotent
(`IF NOT EXISTS`), so a second server starting at the same time does no harm.

Placeholders `{{name}}` in the files are filled from settings; only integers are allowed,
so no text from outside ever reaches DDL.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources

from api.settings import Settings
from api.store.gateway import Query, Store

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

CREATE_MIGRATIONS_TABLE = Query(
    "migrations.create_table",
    """
    CREATE TABLE IF NOT EXISTS schema_migrations
    (
        version    UInt32,
        name       String,
        checksum   String,
        applied_at DateTime('UTC') DEFAULT now()
    )
    ENGINE = ReplacingMergeTree
    ORDER BY version
    """,
)
MIGRATIONS_TABLE_EXISTS = Query("migrations.exists", "EXISTS TABLE schema_migrations")
APPLIED_VERSIONS = Query(
    "migrations.applied", "SELECT DISTINCT version FROM schema_migrations ORDER BY version"
)
RECORD_MIGRATION = Query(
    "migrations.record",
    "INSERT INTO schema_migrations (version, name, checksum) "
    "VALUES ({version:UInt32}, {name:String}, {checksum:String})",
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def load_migrations() -> list[Migration]:
    """Every migration file shipped with the package, in version order."""
    found = []
    for entry in resources.files("migrations.clickhouse").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"two ClickHouse migrations share a version: {versions}")
    return found


def template_values(settings: Settings) -> dict[str, int]:
    return {"raw_ttl_days": settings.raw_ttl_days, "rollup_ttl_days": settings.rollup_ttl_days}


def statements(text: str, values: dict[str, int]) -> list[str]:
    """Split a migration file into statements, comments dropped, placeholders filled."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"unknown placeholder {{{{{key}}}}} in a migration")
        return str(int(values[key]))

    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    body = _PLACEHOLDER.sub(fill, "\n".join(lines))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


Transform = Callable[[str], Iterable[str]]


def migrate(store: Store, settings: Settings, *, transform: Transform | None = None) -> list[int]:
    """Apply every migration not yet recorded. Returns the versions applied now.

    `transform` rewrites each statement (cluster mode turns one CREATE into the
    replicated and distributed pair); by default statements run as written.
    """
    if transform is None and settings.clickhouse_cluster:
        from api.store.cluster import cluster_transform

        transform = cluster_transform(settings.clickhouse_cluster, settings.clickhouse_database)
    run: Transform = transform or (lambda sql: [sql])
    # Checked first: in cluster mode the CREATE is `ON CLUSTER` DDL, which waits for every
    # node — a restart must not fail because one node is down when there is nothing to do.
    if not store.scalar(MIGRATIONS_TABLE_EXISTS):
        for sql in run(CREATE_MIGRATIONS_TABLE.sql):
            store.execute(Query(CREATE_MIGRATIONS_TABLE.name, sql))
    applied = {row["version"] for row in store.rows(APPLIED_VERSIONS)}
    values = template_values(settings)
    done = []
    for migration in load_migrations():
        if migration.version in applied:
            continue
        for index, statement in enumerate(statements(migration.text, values)):
            for sql in run(statement):
                store.execute(Query(f"migration.{migration.version:04d}.{index}", sql))
        store.execute(
            RECORD_MIGRATION, version=migration.version, name=migration.name, checksum=migration.checksum
        )
        log.info("applied ClickHouse migration %04d_%s", migration.version, migration.name)
        done.append(migration.version)
    return done
