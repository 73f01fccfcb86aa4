"""Metadata database fixtures: SQLite in the test's data dir, and a PostgreSQL database
created for this run on the server at 127.0.0.1:5432 (a random name, dropped afterwards,
so parallel runs never meet). PostgreSQL being unreachable fails the tests: CI must not
pass by skipping them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.meta import Meta
from api.meta.db import create_meta_engine
from api.meta.migrate import upgrade_engine
from api.meta.models import Base

# A database to connect to for CREATE/DROP DATABASE. Override for another server.
ADMIN_URL = os.environ.get(
    "INFERWATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


class Postgres:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            self.engine.dispose()
            pytest.fail(
                f"PostgreSQL at {make_url(admin_url).render_as_string()} is unreachable ({exc}); the "
                "metadata tests need it (start it, or point INFERWATCH_TEST_POSTGRES_URL at one)",
                pytrace=False,
            )

    def create(self) -> str:
        name = "iw_test_" + uuid.uuid4().hex[:12]
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    pg = Postgres(ADMIN_URL)
    yield pg
    pg.close()


@pytest.fixture
def postgres_url(postgres: Postgres) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    url = postgres.create()
    yield url
    postgres.drop(url)


@pytest.fixture(scope="session")
def postgres_meta_url(postgres: Postgres) -> Iterator[str]:
    """One migrated PostgreSQL database for this run; `meta` empties its tables per test."""
    url = postgres.create()
    engine = create_meta_engine(url)
    upgrade_engine(engine)
    engine.dispose()
    yield url
    postgres.drop(url)


def _empty(meta: Meta) -> None:
    with meta.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def meta(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Meta]:
    """A migrated metadata database on each backend, empty."""
    if request.param == "sqlite":
        engine = create_meta_engine(f"sqlite:///{tmp_path / 'meta.db'}")
        upgrade_engine(engine)
    else:
        engine = create_meta_engine(request.getfixturevalue("postgres_meta_url"))
    m = Meta(engine)
    _empty(m)
    yield m
    m.close()


@pytest.fixture
def sqlite_meta(tmp_path: Path) -> Iterator[Meta]:
    """A migrated SQLite metadata database (for tests whose subject is not the backend)."""
    engine = create_meta_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade_engine(engine)
    m = Meta(engine)
    yield m
    m.close()
