"""`inferwatch report weekly [--preview FILE] [--send] [--to ADDRESS]` — build the weekly
cost-waste email now (for the seven days before today, in the schedule's time zone) and
write it to a file, send it, or print its plain-text part."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from api.commands.common import add_server_options, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="build or send the weekly cost-waste email")
    kinds = parser.add_subparsers(dest="report", metavar="REPORT", required=True)
    weekly = kinds.add_parser("weekly", help="the weekly cost-waste email")
    weekly.add_argument(
        "--preview",
        type=Path,
        metavar="FILE",
        help="write the HTML to FILE and the plain text next to it (FILE with .txt)",
    )
    weekly.add_argument("--send", action="store_true", help="send it now over SMTP")
    weekly.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="send to this address instead of the configured recipients (repeatable)",
    )
    weekly.add_argument(
        "--at",
        type=datetime.fromisoformat,
        metavar="TIME",
        help="pretend it is sent at TIME (ISO 8601; default now): the week before that day",
    )
    add_server_options(weekly, network=False)
    weekly.set_defaults(func=run_weekly)


def run_weekly(args: argparse.Namespace) -> int:
    from api.errors import ConfigError
    from api.meta import open_meta, upgrade_metadata
    from api.meta.common import parse
    from api.meta.recipients import RecipientIn, enabled_addresses, get_schedule
    from api.reports.data import gather_weekly_inputs
    from api.reports.smtp import send
    from api.reports.weekly import build_weekly_report
    from api.store import open_store
    from api.store.migrate import migrate

    settings = settings_from_args(args)
    to = [parse(RecipientIn, {"email": address}).email for address in args.to]
    sent_at = args.at or datetime.now(UTC)
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=UTC)
    upgrade_metadata(settings)
    meta = open_meta(settings)
    store = open_store(settings)
    try:
        migrate(store, settings)
        with meta.session() as session:
            schedule = get_schedule(session, settings.notify)
            recipients = to or enabled_addresses(session)
        email = build_weekly_report(
            gather_weekly_inputs(store, meta, settings, sent_at=sent_at, tz=schedule.timezone)
        )
    finally:
        store.close()
        meta.close()

    out = sys.stdout
    if args.preview:
        html_path = args.preview
        text_path = (
            html_path.with_suffix(".txt") if html_path.suffix != ".txt" else html_path.with_suffix(".text")
        )
        html_path.write_text(email.html, encoding="utf-8")
        text_path.write_text(email.text, encoding="utf-8")
        out.write(f"Subject: {email.subject}\nWrote {html_path} and {text_path}.\n")
    if args.send:
        if not recipients:
            raise ConfigError("no recipients: add some on the settings page, or pass --to ADDRESS")
        count = send(email, settings.notify, recipients)
        out.write(f"Sent '{email.subject}' to {count} recipient(s).\n")
    if not args.preview and not args.send:
        out.write(f"Subject: {email.subject}\n\n{email.text}")
    return 0
