"""Alembic, driven from code: `upgrade_metadata(settings)` brings the metadata database to
the newest schema (called by `inferwatch migrate` and at server start). Migration scripts
live in `migrations/alembic/versions`; `alembic.ini` at the repository root lets developers
run the alembic command itself (e.g. `alembic revision --autogenerate -m "…"`)."""

from __future__ import annotations

import logging
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from api.meta.db import create_meta_engine, database_url
from api.settings import Settings

log = logging.getLogger(__name__)


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs on `engine` (through one of its connections)."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations") / "alembic"))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations") / "alembic"))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_engine(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade the database behind `engine` to `revision`; returns the revision it is at now."""
    if revision == "head" and current_revision(engine) == head_revision():
        return current_revision(engine)
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    now = current_revision(engine)
    log.info("metadata database at revision %s", now)
    return now


def downgrade_engine(engine: Engine, revision: str = "base") -> str | None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    return current_revision(engine)


def upgrade_metadata(settings: Settings) -> str | None:
    """Bring the metadata database named by `settings` to the newest schema. Idempotent;
    concurrent callers on PostgreSQL serialise on an advisory lock. Returns the revision."""
    engine = create_meta_engine(database_url(settings))
    try:
        return upgrade_engine(engine)
    finally:
        engine.dispose()


def downgrade_metadata(settings: Settings, revision: str = "base") -> str | None:
    """Undo migrations down to `revision` (default: an empty database). For tests and rollbacks."""
    engine = create_meta_engine(database_url(settings))
    try:
        return downgrade_engine(engine, revision)
    finally:
        engine.dispose()
