"""``inferwatch collect``: parse flags and environment, run the collector until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

from collector.config import ENV_PREFIX, OPTIONS, CollectorConfig, ConfigError, build_config

log = logging.getLogger("collector")

DESCRIPTION = """\
Run beside an inference server: sample this node's GPUs through NVML, receive the engine's
OTLP spans on http://127.0.0.1:4318/v1/traces, scrape its Prometheus /metrics, and ship it all
to the inferwatch server, spooling to disk while the server is away.
"""

EPILOG = f"""\
Every flag can also be set with an environment variable: {ENV_PREFIX}<FLAG> with dashes as
underscores, e.g. {ENV_PREFIX}SERVER, {ENV_PREFIX}TOKEN, {ENV_PREFIX}ENGINE_METRICS.
Flags win over the environment. Durations: 1s, 500ms, 2m. Sizes: 512MiB, 2GiB, 1000000.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferwatch collect",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for opt in OPTIONS:
        default = "" if opt.default is None or callable(opt.default) else f" (default: {opt.default})"
        helptext = f"{opt.help}{default} [{opt.env}]"
        if opt.is_switch:
            parser.add_argument(
                opt.flag, dest=opt.attr, action="store_const", const="true", default=None, help=helptext
            )
        else:
            parser.add_argument(opt.flag, dest=opt.attr, metavar=opt.metavar, default=None, help=helptext)
    parser.add_argument(
        "--log-level",
        default=os.environ.get(f"{ENV_PREFIX}LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Log verbosity (default: INFO).",
    )
    return parser


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[CollectorConfig, str]:
    """Flags and environment -> (config, log level). Raises ConfigError or SystemExit (argparse)."""
    args = build_parser().parse_args(list(argv))
    values = {opt.attr: getattr(args, opt.attr) for opt in OPTIONS}
    return build_config(values, environ), args.log_level


def main(argv: list[str]) -> int:
    """Entry point for ``inferwatch collect``: 0 after a clean stop, 2 for bad flags, 1 if it can't start."""
    try:
        config, level = parse_config(argv, os.environ)
    except SystemExit as exc:  # argparse has printed usage and the error (or --help)
        return int(exc.code or 0)
    except ConfigError as exc:
        print(f"inferwatch collect: error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    from collector.runtime import Collector  # deferred: `--help` and bad flags stay fast

    collector = Collector(config)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        collector.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        collector.stop(grace_s=0)
        return 1
    stopping.wait()
    log.info("stopping")
    collector.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
