"""`inferwatch serve` — the server: OTLP ingest, JSON API, web pages, scheduled jobs."""

from __future__ import annotations

import argparse
import gc
import logging

from api.commands.common import add_server_options, settings_from_args

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="run the server (OTLP ingest, API, dashboards)")
    add_server_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.security import check_can_listen

    settings = settings_from_args(args)
    app = create_app(settings)
    if check_can_listen(settings.host, app.state.meta):
        log.warning(
            "local mode: no API token exists, so requests from this machine need no credentials. "
            "Create a token (inferwatch token create --scope admin) to require them."
        )
    store_kind = (
        "ClickHouse at " + _redact(settings.clickhouse_url)
        if settings.clickhouse_url
        else (f"embedded ClickHouse (chDB) in {settings.chdb_path}")
    )
    log.info("inferwatch %s serving on %s, store: %s", app.version, settings.base_url, store_kind)
    # Everything alive now (modules, the app, settings) lives as long as the process: moved
    # out of the collector's sight, a full collection walks only what requests allocate
    # (measured: ~110 ms → ≤ 7 ms, once every 20–40 uncached overviews, a p95's worth).
    gc.freeze()
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(), access_log=False
    )
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url
