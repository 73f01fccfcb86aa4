"""Alembic's INFO lines stay out of the commands' output; its warnings still show."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.meta import upgrade_metadata
from api.meta.migrate import quiet_alembic
from api.settings import Settings


def test_a_command_that_migrates_prints_no_alembic_lines(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "findings", "--data-dir", str(tmp_path), "--log-level", "INFO"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "No findings for" in output
    assert "metadata database at revision" in output  # our own INFO lines still show
    assert "alembic" not in output


def test_alembic_infos_are_dropped_and_its_warnings_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    upgrade_metadata(Settings(data_dir=tmp_path, database_url=""))
    assert not [r for r in caplog.records if r.name.startswith("alembic")]
    with quiet_alembic():
        logging.getLogger("alembic.runtime.migration").info("an info")
        logging.getLogger("alembic.runtime.migration").warning("a warning")
    assert [(r.name, r.levelno) for r in caplog.records if r.name.startswith("alembic")] == [
        ("alembic.runtime.migration", logging.WARNING)
    ]
    assert logging.getLogger("alembic").level == logging.NOTSET  # only while it runs here
