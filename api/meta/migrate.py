"""Alembic, driven from code: `upgrade_metadata(settings)` brings the metadata database to
the newest schema (called by `inferwatch migrate` and at server start). Migration scripts
live in `migrations/alembic/versions`; `alembic.ini` at the repository root lets developers
run the alembic command itself (e.g. `alembic revision --autogenerate -m "…"`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from api.meta.db import create_meta_engine, database_url
from api.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs on `engine` (through one of its connections)."""
    with quiet_alembic():
        from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations") / "alembic"))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


@contextmanager
def quiet_alembic() -> Iterator[None]:
    """Keep Alembic's INFO lines (plugins set up as it is imported, "Context impl
    SQLiteImpl", each migration run) out of the output while it is imported and run here;
    its warnings and errors still show. A level someone set on the `alembic` logger, or
    DEBUG logging overall, is left alone. (Alembic is imported in the functions below, under
    this, so importing this module sets up nothing.)"""
    logger = logging.getLogger("alembic")
    if logger.level != logging.NOTSET or logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)


def head_revision() -> str | None:
    with quiet_alembic():
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(resources.files("migrations") / "alembic"))
        return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with quiet_alembic(), engine.connect() as connection:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()


def upgrade_engine(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade the database behind `engine` to `revision`; returns the revision it is at now."""
    if revision == "head" and current_revision(engine) == head_revision():
        return current_revision(engine)
    config = alembic_config(engine)
    with quiet_alembic(), engine.begin() as connection:
        from alembic import command

        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    now = current_revision(engine)
    log.info("metadata database at revision %s", now)
    return now


def downgrade_engine(engine: Engine, revision: str = "base") -> str | None:
    config = alembic_config(engine)
    with quiet_alembic(), engine.begin() as connection:
        from alembic import command

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
