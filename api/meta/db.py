"""Opening the metadata database: one engine and session factory per process (`Meta`),
SQLite in the data directory by default, PostgreSQL when INFERWATCH_DATABASE_URL is set."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import DateTime, TypeDecorator

from api.errors import ConfigError, InferwatchError, MetaError
from api.settings import Settings

log = logging.getLogger(__name__)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones, so values are stored as
    naive UTC text (which still sorts and compares correctly) and come back tagged UTC.
    Naive datetimes are refused on the way in: they are a bug somewhere upstream.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the metadata database; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL to use. A bare `postgresql://` URL gets the psycopg (3) driver,
    which is the one installed; psycopg2 is not a dependency."""
    url = settings.metadata_url
    for bare in ("postgres://", "postgresql://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def create_meta_engine(url: str) -> Engine:
    """An engine with the connection settings each backend needs here."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"INFERWATCH_DATABASE_URL is not a database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # The scheduler thread and request threads write concurrently: wait for the lock
        # (busy timeout) rather than fail with "database is locked".
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.close()


class Meta:
    """The metadata database of one process: an engine and a session factory.

    Use `with meta.session() as s:` — it commits when the block ends, rolls back on an
    error, and turns driver errors into `MetaError` (HTTP 503).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except InferwatchError:
            session.rollback()
            raise
        except SQLAlchemyError as exc:
            session.rollback()
            log.warning("metadata database call failed: %s", exc)
            raise MetaError(f"the metadata database failed: {_first_line(exc)}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def open_meta(settings: Settings) -> Meta:
    """The metadata database the settings name. Does not migrate it (see `upgrade_metadata`)."""
    return Meta(create_meta_engine(database_url(settings)))
