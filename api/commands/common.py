"""Options shared by the server-side commands, and settings built from them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from api.errors import ConfigError
from api.settings import Settings, unknown_variables


def add_server_options(parser: argparse.ArgumentParser, *, network: bool = True) -> None:
    parser.add_argument("--data-dir", type=Path, help="data directory (env INFERWATCH_DATA_DIR)")
    if network:
        parser.add_argument("--host", help="address to bind (env INFERWATCH_HOST, default 127.0.0.1)")
        parser.add_argument("--port", type=int, help="port to bind (env INFERWATCH_PORT, default 8000)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (env INFERWATCH_LOG_LEVEL)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with command-line flags taking precedence.

    An `INFERWATCH_*` variable that no setting reads is refused: a typo'd variable would
    otherwise be ignored and the server would run with a default nobody chose."""
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; docs/configuration.md lists every INFERWATCH_ variable"
        )
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "host", "port", "log_level"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)
