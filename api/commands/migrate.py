"""`inferwatch migrate` — apply ClickHouse (and metadata database) migrations, then exit."""

from __future__ import annotations

import argparse
import logging

from api.commands.common import add_server_options, settings_from_args

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("migrate", help="apply schema migrations to the store and exit")
    add_server_options(parser, network=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from api.meta import upgrade_metadata
    from api.store import open_store
    from api.store.migrate import migrate

    settings = settings_from_args(args)
    store = open_store(settings)
    try:
        applied = migrate(store, settings)
    finally:
        store.close()
    print(  # noqa: T201
        f"ClickHouse: applied {len(applied)} migration(s)"
        + (f": {applied}" if applied else ", already current")
    )
    revision = upgrade_metadata(settings)
    print(f"Metadata database: at revision {revision}")  # noqa: T201
    return 0
