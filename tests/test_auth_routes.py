"""Every route requires the scope the access table says — checked by enumerating the app's
routes, so a route added tomorrow cannot slip through unprotected."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from api.app import create_app
from api.auth import required_scope
from api.meta import Meta
from api.meta.tokens import TokenIn, create_token
from api.settings import Settings
from api.store import Store
from tests.meta.conftest import sqlite_meta  # noqa: F401  (a fixture)

EXPECTED_PUBLIC = {"/healthz", "/login", "/logout"}


@pytest.fixture
def secured(
    settings: Settings,
    store: Store,
    sqlite_meta: Meta,  # noqa: F811 — the imported fixture
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    # Bound beyond loopback: no local mode, credentials always needed.
    meta = sqlite_meta
    app = create_app(settings.model_copy(update={"host": "0.0.0.0"}), store=store, meta=meta)
    secrets = {}
    with meta.session() as s:
        for scope in ("ingest", "read", "admin"):
            secrets[scope] = create_token(s, TokenIn(scope=scope, name=f"test-{scope}")).secret
    with TestClient(app, client=("127.0.0.1", 5555)) as client:
        yield client, secrets


def routes_of(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route, path parameters filled with an id that names nothing
    (so calling a DELETE or revoke route harms none of the test's tokens). FastAPI
    keeps included routers as nested objects; walk them."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[object], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                context = getattr(route, "include_context", None)
                walk(list(included.routes), prefix + (getattr(context, "prefix", "") or ""))
            elif isinstance(route, Mount):
                found.append(("GET", prefix + route.path.rstrip("/") + "/x"))
            elif isinstance(route, APIRoute | Route):
                path = prefix + re.sub(r"\{[^}:]+(:[^}]+)?\}", "999999", route.path)
                found.extend((m, path) for m in sorted(route.methods or {"GET"}) if m != "HEAD")

    walk(list(app.routes), "")
    return found


def test_every_route_needs_credentials_of_the_right_scope(secured: tuple[TestClient, dict[str, str]]) -> None:
    client, secrets = secured
    routes = routes_of(client.app)  # type: ignore[arg-type]
    assert len(routes) > 10
    public = set()
    for method, path in routes:
        needed = required_scope(method, path)
        anonymous = client.request(method, path, follow_redirects=False)
        if needed is None:
            public.add(path)
            continue
        # Web pages send a browser to the login page; everything else answers 401.
        signed_out = anonymous.status_code == 401 or (
            anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
        )
        assert signed_out, (method, path, anonymous.status_code)
        wrong = "read" if needed in ("ingest", "admin") else "ingest"
        refused = client.request(
            method, path, headers={"Authorization": f"Bearer {secrets[wrong]}"}, follow_redirects=False
        )
        assert refused.status_code == 403, (method, path, wrong, refused.status_code)
        allowed = client.request(
            method, path, headers={"Authorization": f"Bearer {secrets[needed]}"}, follow_redirects=False
        )
        assert allowed.status_code not in (401, 403), (method, path, needed, allowed.status_code)
    assert public <= EXPECTED_PUBLIC | {p for p in public if p.startswith("/static/")}


def test_the_server_refuses_to_listen_beyond_loopback_without_a_token(
    sqlite_meta: Meta,  # noqa: F811 — the imported fixture
) -> None:
    meta = sqlite_meta
    from api.errors import ConfigError
    from api.security import check_can_listen

    assert check_can_listen("127.0.0.1", meta) is True  # local mode
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0"):
        check_can_listen("0.0.0.0", meta)
    with meta.session() as s:
        create_token(s, TokenIn(scope="ingest"))
    assert check_can_listen("0.0.0.0", meta) is False
    assert check_can_listen("127.0.0.1", meta) is False  # a token exists: no local mode
