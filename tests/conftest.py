"""Shared fixtures: a real chDB store (one data path per pytest process, a fresh database
per test), the app on it, and a live HTTP server for clients that need a socket (the
OpenTelemetry SDK exporters, the collector, browsers)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from api.app import create_app
from api.settings import Settings
from api.store import Store
from api.store.gateway import Query
from api.store.migrate import migrate
from api.store.transports import ChdbTransport

# The same examples on every run, so a CI result can be reproduced; explore new ones with
# `pytest --hypothesis-profile=explore`.
hypothesis_settings.register_profile("repeatable", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile("repeatable")


def pytest_configure(config: pytest.Config) -> None:
    """Rows are inserted while the request waits (no write-ahead log), so a test reads what it
    posted straight away; servers started as processes inherit this. The log's own tests,
    and the fault scenarios, turn it back on."""
    os.environ["INFERWATCH_INGEST_FLUSH_S"] = "0"


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def settings(tmp_path: Path, chdb_dir: Path) -> Settings:
    """Settings for one test: its own data dir, and its own ClickHouse database inside the
    process-wide chDB path (chDB allows one path per process)."""
    database = "t_" + uuid.uuid4().hex[:12]
    # The scheduler stays off: tests that need it start it themselves.
    return Settings(data_dir=tmp_path, clickhouse_database=database, notify={"scheduler_enabled": False})


def make_store(settings: Settings, chdb_dir: Path) -> Store:
    transport = ChdbTransport(
        chdb_dir, settings.clickhouse_database, query_timeout_s=settings.query_timeout_s
    )
    return Store(transport)


@pytest.fixture
def store(settings: Settings, chdb_dir: Path) -> Iterator[Store]:
    s = make_store(settings, chdb_dir)
    migrate(s, settings)
    yield s
    s.execute(Query("test.drop", f"DROP DATABASE IF EXISTS {settings.clickhouse_database} SYNC"))
    s.close()


@pytest.fixture
def app(settings: Settings, store: Store) -> FastAPI:
    return create_app(settings, store=store)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client calling from loopback: the server's local mode lets it in (no token exists)."""
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving an app on a loopback port, in a thread of this process."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    yield server
    server.stop()
