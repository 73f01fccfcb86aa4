"""Sending an `Email` over SMTP: STARTTLS or implicit TLS, login when a user is set, one
message to all recipients (each sees only their own address in To)."""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from api.alerts.settings import NotifySettings
from api.errors import ConfigError, InferwatchError
from api.reports.model import Email

log = logging.getLogger(__name__)


class SendError(InferwatchError):
    """The SMTP server could not be reached or refused the message."""

    status = 502
    code = "smtp_failed"


def message(email: Email, sender: str, recipient: str) -> EmailMessage:
    """A multipart/alternative message: plain text first, HTML preferred by clients that can."""
    msg = EmailMessage()
    msg["Subject"] = email.subject
    msg["From"] = sender
    msg["To"] = recipient
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "inferwatch.local")
    msg.set_content(email.text, subtype="plain", charset="utf-8")
    msg.add_alternative(email.html, subtype="html", charset="utf-8")
    return msg


def send(email: Email, smtp: NotifySettings, recipients: Sequence[str]) -> int:
    """Send `email` to each recipient over one SMTP connection; returns how many accepted it.

    Raises ConfigError when no SMTP host is set, SendError when the server cannot be
    reached, refuses the login, or refuses every recipient."""
    if not smtp.smtp_host:
        raise ConfigError("no SMTP server: set INFERWATCH_NOTIFY__SMTP_HOST")
    if not recipients:
        return 0
    try:
        context = ssl.create_default_context(cafile=smtp.smtp_ca_file or None)
        client: smtplib.SMTP
        if smtp.smtp_ssl:
            client = smtplib.SMTP_SSL(
                smtp.smtp_host, smtp.smtp_port, timeout=smtp.smtp_timeout_s, context=context
            )
        else:
            client = smtplib.SMTP(smtp.smtp_host, smtp.smtp_port, timeout=smtp.smtp_timeout_s)
        with client:
            client.ehlo()
            if smtp.smtp_starttls and not smtp.smtp_ssl:
                client.starttls(context=context)
                client.ehlo()
            if smtp.smtp_user:
                client.login(smtp.smtp_user, smtp.smtp_password.get_secret_value())
            sent = 0
            refused: dict[str, str] = {}
            for recipient in recipients:
                try:
                    client.send_message(message(email, smtp.smtp_from, recipient))
                    sent += 1
                except smtplib.SMTPRecipientsRefused as exc:
                    refused[recipient] = str(exc.recipients.get(recipient, exc))
        if refused:
            log.warning("SMTP server refused %s", ", ".join(f"{k} ({v})" for k, v in refused.items()))
        if sent == 0:
            raise SendError(f"the SMTP server refused every recipient: {', '.join(refused)}")
        return sent
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"sending email via {smtp.smtp_host}:{smtp.smtp_port} failed: {exc}") from exc
