"""Fixtures of the web tests: the app on a store holding the small fleet of `seed.py`,
posted through the real OTLP ingest path. Seeding takes seconds, so read-only tests share
one seeded app per module (`seeded`, `seeded_server`); tests that change state (an
acknowledgement) take a fresh one (`seeded_fresh`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.findings.settings import FindingsSettings
from api.settings import Settings
from api.store import Store
from api.store.gateway import Query
from api.store.migrate import migrate
from tests.conftest import LiveServer, make_store
from tests.web.seed import seed

# Local mode: a loopback caller needs no token while none exists (api.security).
LOOPBACK = ("127.0.0.1", 50000)


def web_settings(data_dir: Path) -> Settings:
    """Every finding reported whatever its dollars: the seeded fleet is small."""
    return Settings(
        data_dir=data_dir,
        clickhouse_database="t_" + uuid.uuid4().hex[:12],
        findings=FindingsSettings(min_weekly_usd=0),
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return web_settings(tmp_path)


@pytest.fixture(scope="module")
def _module_app(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[tuple[FastAPI, Store]]:
    settings = web_settings(tmp_path_factory.mktemp("web"))
    store = make_store(settings, chdb_dir)
    migrate(store, settings)
    yield create_app(settings, store=store), store
    store.execute(Query("test.drop", f"DROP DATABASE IF EXISTS {settings.clickhouse_database} SYNC"))
    store.close()


@pytest.fixture(scope="module")
def seeded(_module_app: tuple[FastAPI, Store]) -> Iterator[TestClient]:
    with TestClient(_module_app[0], client=LOOPBACK) as client:
        seed(client)
        yield client


@pytest.fixture
def seeded_fresh(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=LOOPBACK) as client:
        seed(client)
        yield client


@pytest.fixture(scope="module")
def seeded_server(_module_app: tuple[FastAPI, Store]) -> Iterator[LiveServer]:
    app = _module_app[0]
    with TestClient(app, client=LOOPBACK) as client:
        seed(client)
    server = LiveServer(app).start()
    yield server
    server.stop()
