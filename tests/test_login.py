"""Signing in: a user made with `inferwatch user create` signs in at /login and reads pages
with the session cookie; a wrong password does not; a viewer cannot write."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from api.meta import open_meta
from api.settings import Settings
from api.store import Store


def test_a_user_signs_in_and_reads_but_a_viewer_cannot_write(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["user", "create", "ada", "--role", "viewer", "--password-stdin"]) == 0
    secured = settings.model_copy(update={"host": "0.0.0.0", "data_dir": tmp_path})
    meta = open_meta(secured)
    app = create_app(secured, store=store, meta=meta)
    with TestClient(app, client=("192.0.2.7", 4000)) as browser:
        assert browser.get("/api/v1/requests").status_code == 401
        wrong = browser.post("/login", data={"username": "ada", "password": "nope nope nope", "next": "/"})
        assert wrong.status_code == 401
        assert "Wrong username or password" in wrong.text
        signed_in = browser.post(
            "/login",
            data={"username": "ada", "password": "correct horse battery", "next": "https://evil.example/"},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/"  # never redirected off the site
        assert browser.get("/api/v1/requests").status_code == 200
        assert browser.post("/api/v1/settings/tokens", json={"scope": "admin"}).status_code == 403
        browser.post("/logout")
        assert browser.get("/api/v1/requests").status_code == 401
    meta.close()
