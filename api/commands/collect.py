"""`inferwatch collect` — listed here for `--help`; `api.cli.main` hands its arguments to
`collector.cli.main` before this parser runs, so the collector never imports the server."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "collect",
        help="run the collector sidecar beside an inference server (see `inferwatch collect --help`)",
        add_help=False,
    )
