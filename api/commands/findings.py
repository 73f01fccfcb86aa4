"""`inferwatch findings [--window 7d] [--json]` — compute the findings from the store and
print them as a table (or JSON), at the prices and deployment SLOs saved on the settings
pages."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TextIO

from api.commands.common import add_server_options, settings_from_args
from api.findings.model import Finding, usd
from api.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "findings", help="print what to change: idle GPUs, mis-sized fleets, optimisations"
    )
    parser.add_argument("--window", default="7d", help="window ending now (or at --end), e.g. 1d, 7d, 30d")
    parser.add_argument(
        "--end", type=datetime.fromisoformat, help="end of the window, ISO 8601 (default now)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_server_options(parser, network=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from api.findings.engine import align, run_findings
    from api.store import open_store
    from api.store.migrate import migrate
    from api.timewindow import window_ending

    settings = configured(settings_from_args(args))
    window = align(window_ending(args.window, args.end))
    store = open_store(settings)
    try:
        migrate(store, settings)
        findings = run_findings(store, settings, window)
    finally:
        store.close()
    if args.json:
        json.dump([f.to_dict() for f in findings], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print_table(
            findings,
            sys.stdout,
            window_text=f"{window.start:%Y-%m-%d %H:%M} – {window.end:%Y-%m-%d %H:%M} UTC",
        )
    return 0


def configured(settings: Settings) -> Settings:
    """`settings` with the prices and deployments saved on the settings pages laid over (as
    the server's findings use them)."""
    from api.meta import open_meta, upgrade_metadata
    from api.meta.overlay import with_configured

    upgrade_metadata(settings)
    meta = open_meta(settings)
    try:
        with meta.session() as session:
            return with_configured(settings, session)
    finally:
        meta.close()


def print_table(findings: list[Finding], out: TextIO, *, window_text: str) -> None:
    """A readable table: severity, dollars a week, kind, scope, and the title; then each
    finding's recommendation."""
    if not findings:
        out.write(f"No findings for {window_text}.\n")
        return
    saving = sum(f.weekly_usd for f in findings if f.effect.value == "saving" and f.kind != "idle_pattern")
    out.write(f"{len(findings)} finding(s) for {window_text}; savings found: {usd(saving)}/week\n\n")
    header = f"{'SEVERITY':<8}  {'$/WEEK':>10}  {'KIND':<24}  {'SCOPE':<28}  TITLE\n"
    out.write(header)
    for f in findings:
        money = (
            "" if f.effect.value == "none" else ("+" if f.effect.value == "cost" else "") + usd(f.weekly_usd)
        )
        scope = str(f.scope)[:28]
        out.write(f"{f.severity.value:<8}  {money:>10}  {f.kind:<24}  {scope:<28}  {f.title}\n")
    out.write("\nWhat to do:\n")
    for i, f in enumerate(findings, 1):
        out.write(f"{i:>3}. [{f.kind} · {f.scope}] {f.recommendation}\n")
