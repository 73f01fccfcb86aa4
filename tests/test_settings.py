"""Settings: validated at start, and every one documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.cli import main
from api.settings import Settings, env_names, unknown_variables

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`(INFERWATCH_[A-Z0-9_]+)`", DOC.read_text()))
    missing = [name for name in env_names(Settings) if name not in documented]
    assert not missing, f"add these to docs/configuration.md: {missing}"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("INFERWATCH_PORT", "9123")
    monkeypatch.setenv("INFERWATCH_CLICKHOUSE_DATABASE", "fleet_a")
    s = Settings()
    assert (s.data_dir, s.port, s.clickhouse_database) == (tmp_path, 9123, "fleet_a")
    assert s.metadata_url == f"sqlite:///{tmp_path / 'inferwatch.db'}"
    assert s.base_url == "http://127.0.0.1:9123"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("INFERWATCH_PORT", "99999", "less than or equal to 65535"),
        ("INFERWATCH_CLICKHOUSE_DATABASE", "x; DROP TABLE requests", "plain identifier"),
        ("INFERWATCH_LOG_LEVEL", "chatty", "one of DEBUG"),
        ("INFERWATCH_RAW_TTL_DAYS", "0", "greater than or equal to 1"),
    ],
)
def test_invalid_settings_are_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert problem in str(caught.value)


def test_unknown_variables_are_found_and_the_collectors_left_alone() -> None:
    environ = {"INFERWATCH_PORT": "1", "INFERWATCH_PROT": "1", "INFERWATCH_COLLECTOR_TOKEN": "x", "HOME": "/"}
    assert unknown_variables(environ) == ["INFERWATCH_PROT"]


def test_migrate_command_refuses_a_misspelt_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("INFERWATCH_CLICKHOUSE_DATABSE", "typo")
    assert main(["migrate"]) == 2
    assert "unknown setting(s) INFERWATCH_CLICKHOUSE_DATABSE" in capsys.readouterr().err
