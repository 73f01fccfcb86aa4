"""`inferwatch token create|list|revoke` on a fresh data directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.cli import main
from api.meta import open_meta
from api.meta.tokens import authenticate_token
from api.settings import Settings


def test_create_prints_the_secret_once_list_shows_only_the_prefix_and_revoke_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(tmp_path))
    assert main(["token", "create", "--scope", "ingest", "--name", "collectors"]) == 0
    created = capsys.readouterr().out
    secret = re.search(r"\b(iwt_[A-Za-z0-9_-]{40,})\b", created)
    assert secret, created
    token = secret.group(1)

    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert token[:12] in listing and token not in listing
    assert re.search(r"\b1\s+iwt_\S+\s+ingest\s+.*never\s+active\s+collectors", listing)

    meta = open_meta(Settings(data_dir=tmp_path))
    try:
        with meta.session() as s:
            assert authenticate_token(s, token, "ingest") is not None
        assert main(["token", "revoke", token[:12]]) == 0
        assert "Revoked token 1" in capsys.readouterr().out
        with meta.session() as s:
            assert authenticate_token(s, token, "ingest") is None
    finally:
        meta.close()
    assert main(["token", "list", "--active"]) == 0
    assert "No tokens." in capsys.readouterr().out


def test_an_unknown_scope_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        main(["token", "create", "--scope", "root"])
    assert exited.value.code == 2


def test_revoking_an_unknown_token_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(tmp_path))
    assert main(["token", "revoke", "iwt_nothere"]) == 2
    assert "no token 'iwt_nothere'" in capsys.readouterr().err
