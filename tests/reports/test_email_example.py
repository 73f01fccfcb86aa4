"""docs/email-example.html and .txt are what `scripts/email_example.py` renders today:
a template change without regenerating them fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from api.reports.weekly import build_weekly_report

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_example_email_is_current() -> None:
    spec = importlib.util.spec_from_file_location("email_example", ROOT / "scripts" / "email_example.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    email = build_weekly_report(script.example())
    assert (ROOT / "docs" / "email-example.html").read_text(encoding="utf-8") == email.html, (
        "run: python scripts/email_example.py"
    )
    assert (ROOT / "docs" / "email-example.txt").read_text(encoding="utf-8") == (
        f"Subject: {email.subject}\n\n{email.text}"
    ), "run: python scripts/email_example.py"
