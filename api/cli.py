"""`inferwatch` — the one console script. Each subcommand lives in its own module under
`api/commands/` and exposes `register(subparsers)`; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pydantic import ValidationError

from api.errors import InferwatchError

# Order is the order of `inferwatch --help`.
COMMAND_MODULES = (
    "api.commands.serve",
    "api.commands.demo",
    "api.commands.collect",
    "api.commands.migrate",
    "api.commands.findings",
    "api.commands.report",
    "api.commands.token",
    "api.commands.user",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferwatch",
        description="Where the money and the milliseconds of your GPU inference go.",
    )
    parser.add_argument("--version", action="version", version=f"inferwatch {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `collect` has its own parser and must not import the server's packages.
    if argv[:1] == ["collect"]:
        from collector.cli import main as collect_main

        return collect_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", None) or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        print(f"inferwatch: invalid settings:\n{_settings_errors(exc)}", file=sys.stderr)  # noqa: T201
        return 2
    except InferwatchError as exc:
        print(f"inferwatch: {exc.message}", file=sys.stderr)  # noqa: T201
        return 2 if exc.status < 500 else 1
    except KeyboardInterrupt:
        return 130


def _settings_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = "INFERWATCH_" + "__".join(str(p).upper() for p in err["loc"])
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def _version() -> str:
    from api import __version__

    return __version__


if __name__ == "__main__":
    raise SystemExit(main())
