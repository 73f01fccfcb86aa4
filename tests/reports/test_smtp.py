"""Sending the weekly email to a real SMTP server (aiosmtpd) started by the test: both
parts arrive, with the findings' figures and the right links; STARTTLS and login work."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from api.alerts.settings import NotifySettings
from api.findings.model import usd
from api.reports.smtp import SendError, send
from api.reports.weekly import build_weekly_report
from tests.reports.example import BASE, HELD, OVERSIZED, PATTERN, inputs


@dataclass
class Inbox:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(**kwargs: Any) -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _parts(raw: bytes) -> tuple[email.message.EmailMessage, str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return msg, text.get_content(), html.get_content()  # type: ignore[return-value]


def test_both_parts_arrive_with_the_findings_figures_and_links() -> None:
    report = build_weekly_report(inputs(top_n=3))
    with smtp_server() as (inbox, port):
        notify = NotifySettings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            smtp_from="inferwatch@fleet.example.com",
        )
        assert send(report, notify, ["lead@example.com", "cfo@example.com"]) == 2
    assert [(m[0], m[1]) for m in inbox.messages] == [
        ("inferwatch@fleet.example.com", ["lead@example.com"]),
        ("inferwatch@fleet.example.com", ["cfo@example.com"]),
    ]
    msg, text, html = _parts(inbox.messages[0][2])
    assert msg["Subject"] == "inferwatch weekly: $10,000 on GPUs, $2,500 idle (23–29 Mar 2026)"
    assert (msg["From"], msg["To"]) == ("inferwatch@fleet.example.com", "lead@example.com")
    for finding in (HELD, PATTERN, OVERSIZED):
        figure = usd(finding.weekly_usd)  # $1,340, $900, $612: what the dashboard prints too
        assert f"save {figure}/week" in text and f"save {figure}/week" in html
        link = f"{BASE}/findings/{finding.fingerprint}"
        assert link in text and f'href="{link}"' in html
    assert "$10,000" in text and "$10,000" in html
    assert re.search(r"Savings found\s+\$2,002/week", text) and "$2,002" in html
    assert f'href="{BASE}/"' in html and f"Dashboard: {BASE}/" in text


def test_starttls_and_login(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.login == b"iw" and data.password == b"s3cret-pw")

    report = build_weekly_report(inputs())
    with smtp_server(
        tls_context=server_tls, require_starttls=True, authenticator=authenticator, auth_require_tls=True
    ) as (inbox, port):
        good = NotifySettings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_user="iw",
            smtp_password="s3cret-pw",
            smtp_ca_file=str(ca_file),
        )
        assert send(report, good, ["lead@example.com"]) == 1
        # aiosmtpd answers smtplib's fallback AUTH LOGIN after a refused AUTH PLAIN by waiting: a short
        # timeout ends that; a real server answers 535 at once.
        bad = good.model_copy(update={"smtp_password": SecretStr("wrong"), "smtp_timeout_s": 2.0})
        with pytest.raises(SendError, match="failed"):
            send(report, bad, ["lead@example.com"])
        untrusted = good.model_copy(update={"smtp_ca_file": ""})
        with pytest.raises(SendError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            send(report, untrusted, ["lead@example.com"])
    assert logins[0] == (b"iw", b"s3cret-pw")
    assert len(inbox.messages) == 1
    _parts(inbox.messages[0][2])


def test_no_smtp_host_is_a_configuration_error() -> None:
    from api.errors import ConfigError

    with pytest.raises(ConfigError, match="INFERWATCH_NOTIFY__SMTP_HOST"):
        send(build_weekly_report(inputs()), NotifySettings(), ["lead@example.com"])
