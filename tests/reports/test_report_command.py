"""`inferwatch report weekly` in its own process (it opens the embedded store, and chDB
allows one data path per process): the preview files and a real send."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path

from tests.reports.test_smtp import smtp_server

ROOT = Path(__file__).resolve().parents[2]


def test_preview_writes_both_parts_and_send_delivers_them(tmp_path: Path) -> None:
    preview = tmp_path / "week.html"
    with smtp_server() as (inbox, port):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")},
            "INFERWATCH_DATA_DIR": str(tmp_path / "data"),
            "INFERWATCH_PUBLIC_URL": "https://iw.example.com",
            "INFERWATCH_NOTIFY__SMTP_HOST": "127.0.0.1",
            "INFERWATCH_NOTIFY__SMTP_PORT": str(port),
            "INFERWATCH_NOTIFY__SMTP_STARTTLS": "false",
            "INFERWATCH_NOTIFY__SMTP_FROM": "iw@example.com",
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "api.cli",
                "report",
                "weekly",
                "--at",
                "2026-03-30T09:00:00+00:00",
                "--preview",
                str(preview),
                "--send",
                "--to",
                "Lead@Example.com",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr
    subject = "inferwatch weekly: $0.00 on GPUs, $0.00 idle (23–29 Mar 2026)"
    assert f"Subject: {subject}" in done.stdout
    assert "Sent" in done.stdout and "to 1 recipient(s)" in done.stdout
    html, text = preview.read_text(), preview.with_suffix(".txt").read_text()
    assert "<html" in html and 'href="https://iw.example.com/"' in html
    assert text.startswith("inferwatch weekly · 23–29 Mar 2026 (UTC)")
    (mail_from, rcpt, raw) = inbox.messages[0]
    assert (mail_from, rcpt) == ("iw@example.com", ["lead@example.com"])
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == subject
    # SMTP carries CRLF line ends.
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == text  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == html  # type: ignore[union-attr]
