"""When the demo feeds afresh, serves what it has, or refuses a directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import main
from api.demo.datadir import (
    MARKER,
    DataDirError,
    Marker,
    Plan,
    plan,
    read_marker,
    wipe,
    write_marker,
)

NOW = 1_800_000_000
WEEK = 7 * 1440


def complete(data_dir: Path, *, end_s: int = NOW - 600, seed: int = 7, minutes: int = WEEK) -> None:
    write_marker(data_dir, Marker(seed=seed, start_s=end_s - 60 * minutes, minutes=minutes, complete=True))


def test_a_new_or_empty_directory_is_fed(tmp_path: Path) -> None:
    assert plan(tmp_path / "new", seed=7, minutes=WEEK, now_s=NOW, reset=False)[0] is Plan.FEED
    assert plan(tmp_path, seed=7, minutes=WEEK, now_s=NOW, reset=False)[0] is Plan.FEED


def test_a_directory_holding_the_same_recent_week_is_served_as_is(tmp_path: Path) -> None:
    complete(tmp_path)
    action, why = plan(tmp_path, seed=7, minutes=WEEK, now_s=NOW, reset=False)
    assert action is Plan.REUSE and "already holds" in why


@pytest.mark.parametrize(
    ("marker", "reset", "reason"),
    [
        ({}, True, "--reset"),
        ({"end_s": NOW - 2 * 86_400}, False, "more than a day ago"),
        ({"seed": 8}, False, "different simulation"),
        ({"minutes": 60}, False, "different simulation"),
    ],
)
def test_a_stale_different_or_reset_demo_is_fed_again(
    tmp_path: Path, marker: dict[str, int], reset: bool, reason: str
) -> None:
    complete(tmp_path, **marker)
    action, why = plan(tmp_path, seed=7, minutes=WEEK, now_s=NOW, reset=reset)
    assert action is Plan.FEED and reason in why


def test_an_interrupted_feed_is_redone(tmp_path: Path) -> None:
    write_marker(tmp_path, Marker(seed=7, start_s=NOW - 60 * WEEK, minutes=WEEK, complete=False))
    assert plan(tmp_path, seed=7, minutes=WEEK, now_s=NOW, reset=False)[0] is Plan.FEED
    (tmp_path / MARKER).write_text("{not json")
    assert plan(tmp_path, seed=7, minutes=WEEK, now_s=NOW, reset=False)[0] is Plan.FEED


def test_a_directory_with_other_data_is_refused_and_never_wiped(tmp_path: Path) -> None:
    (tmp_path / "inferwatch.db").write_text("real data")
    with pytest.raises(DataDirError, match="not a demo data directory"):
        plan(tmp_path, seed=7, minutes=WEEK, now_s=NOW, reset=True)
    with pytest.raises(DataDirError):
        wipe(tmp_path)
    assert (tmp_path / "inferwatch.db").read_text() == "real data"


def test_wipe_empties_a_demo_directory(tmp_path: Path) -> None:
    complete(tmp_path)
    (tmp_path / "clickhouse").mkdir()
    (tmp_path / "clickhouse" / "part").write_text("x")
    wipe(tmp_path)
    assert tmp_path.is_dir() and not any(tmp_path.iterdir())
    assert read_marker(tmp_path) is None


def test_the_command_refuses_a_directory_that_is_not_the_demos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo", "--data-dir", str(tmp_path), "--port", "1"]) == 2
    assert "not a demo data directory" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"
