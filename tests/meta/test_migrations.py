"""Alembic migrations of the metadata database, on SQLite and on PostgreSQL: upgrade from
empty, downgrade to nothing, upgrade again — and the schema they build is the models'."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from api.meta.db import create_meta_engine
from api.meta.migrate import (
    current_revision,
    downgrade_engine,
    head_revision,
    upgrade_engine,
    upgrade_metadata,
)
from api.meta.models import Base
from api.settings import Settings

TABLES = {
    "alert_rule_webhooks",
    "alert_rules",
    "alert_states",
    "api_tokens",
    "deployments",
    "finding_acks",
    "gpu_prices",
    "job_leases",
    "price_overrides",
    "report_recipients",
    "report_schedule",
    "users",
    "webhook_deliveries",
    "webhooks",
}


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _round_trip(engine: Engine) -> None:
    assert _tables(engine) == set()
    assert upgrade_engine(engine) == head_revision()
    assert _tables(engine) == TABLES
    with engine.begin() as conn:  # a row survives nothing, but the schema must accept one
        conn.execute(
            text(
                "INSERT INTO report_recipients (email, name, enabled, created_at) "
                "VALUES ('a@example.com', '', true, CURRENT_TIMESTAMP)"
            )
        )

    assert downgrade_engine(engine, "base") is None
    assert _tables(engine) == set()

    assert upgrade_engine(engine) == head_revision()
    assert _tables(engine) == TABLES
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM report_recipients")).scalar() == 0


def _schema_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"the models and the migrations disagree: {diff}"


def test_sqlite_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    engine = create_meta_engine(f"sqlite:///{tmp_path / 'm.db'}")
    _round_trip(engine)
    _schema_matches_models(engine)
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_upgrade_downgrade_upgrade(postgres_url: str) -> None:
    engine = create_meta_engine(postgres_url)
    assert engine.dialect.name == "postgresql"
    _round_trip(engine)
    _schema_matches_models(engine)
    engine.dispose()


def test_upgrade_metadata_creates_the_sqlite_file_in_the_data_dir_and_is_idempotent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert upgrade_metadata(settings) == head_revision()
    assert (tmp_path / "data" / "inferwatch.db").is_file()
    assert upgrade_metadata(settings) == head_revision()


@pytest.mark.postgres
def test_upgrade_metadata_takes_a_bare_postgresql_url(postgres_url: str, tmp_path: Path) -> None:
    bare = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    settings = Settings(data_dir=tmp_path, database_url=bare)
    assert upgrade_metadata(settings) == head_revision()
    engine = create_meta_engine(postgres_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
