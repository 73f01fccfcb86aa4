"""The collector's configuration: one validated, immutable object built once at start.

Every setting comes from a command-line flag, else an environment variable
``INFERWATCH_COLLECTOR_<NAME>``, else its default. ``OPTIONS`` is the single list of them;
the CLI, ``docs/collector.md`` and a test that checks the docs all derive from it.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "INFERWATCH_COLLECTOR_"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the flag and the env variable."""


# --- value parsers (str -> typed value, ValueError with a short reason) ----------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(text: str) -> float:
    """``"1s"``, ``"500ms"``, ``"2m"``, ``"1.5"`` (seconds) -> seconds as a float (> 0)."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (examples: 1s, 500ms, 2m)")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def parse_size(text: str) -> int:
    """``"256MiB"``, ``"1GB"``, ``"1048576"`` (bytes) -> bytes as an int (> 0)."""
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (examples: 512MiB, 2GiB, 1000000)")
    size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"{text!r} must be larger than zero")
    return size


def parse_port(text: str) -> int:
    """A TCP port 0-65535; 0 lets the OS pick a free one (useful in tests)."""
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a TCP port (0-65535)")
    return port


def parse_http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host; returned without a trailing slash."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL with a host")
    return text.strip().rstrip("/")


def parse_pid(text: str) -> int:
    pid = int(text)
    if pid <= 0:
        raise ValueError(f"{pid} is not a process id")
    return pid


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def parse_text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _default_spool_dir() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "inferwatch", "collector-spool")


@dataclass(frozen=True)
class Option:
    """One setting: its attribute, flag, environment variable, parser, default and help."""

    attr: str
    flag: str
    parse: Callable[[str], Any]
    default: Callable[[], Any] | Any
    help: str
    metavar: str | None = None
    is_switch: bool = False  # a flag without a value (``--no-gpu``)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.attr.upper()


OPTIONS: tuple[Option, ...] = (
    Option(
        "server",
        "--server",
        parse_http_url,
        None,
        "Base URL of the inferwatch server, e.g. http://inferwatch:8000 (required).",
        "URL",
    ),
    Option(
        "token",
        "--token",
        parse_text,
        None,
        "Ingest token sent as 'Authorization: Bearer'. Prefer the environment variable.",
        "TOKEN",
    ),
    Option("cluster", "--cluster", parse_text, "default", "Cluster or fleet name.", "NAME"),
    Option(
        "deployment",
        "--deployment",
        parse_text,
        None,
        "Deployment name (replicas serving one model). Unset: the server uses the engine's service.name.",
        "NAME",
    ),
    Option(
        "model", "--model", parse_text, None, "Served model, for engines whose spans don't name it.", "NAME"
    ),
    Option(
        "instance",
        "--instance",
        parse_text,
        socket.gethostname,
        "This replica's name (default: the host name, which is the pod name in Kubernetes).",
        "NAME",
    ),
    Option(
        "host_name",
        "--host-name",
        parse_text,
        socket.gethostname,
        "The node's name (default: the host name).",
        "NAME",
    ),
    Option(
        "otlp_host",
        "--otlp-host",
        parse_text,
        "127.0.0.1",
        "Address the OTLP/HTTP span receiver listens on.",
        "ADDR",
    ),
    Option("otlp_port", "--otlp-port", parse_port, 4318, "Port of the OTLP/HTTP span receiver.", "PORT"),
    Option(
        "interval", "--interval", parse_duration, 1.0, "GPU sampling interval (1s, 500ms, ...).", "DURATION"
    ),
    Option(
        "energy_interval",
        "--energy-interval",
        parse_duration,
        60.0,
        "How often to read the GPU energy counter (each read costs 4-6 ms of CPU).",
        "DURATION",
    ),
    Option(
        "process_interval",
        "--process-interval",
        parse_duration,
        30.0,
        "How often to read the GPU's processes and their utilisation (each read costs ~2 ms of CPU).",
        "DURATION",
    ),
    Option(
        "engine_metrics",
        "--engine-metrics",
        parse_http_url,
        None,
        "The engine's Prometheus endpoint, e.g. http://127.0.0.1:8000/metrics.",
        "URL",
    ),
    Option(
        "dcgm_metrics",
        "--dcgm-metrics",
        parse_http_url,
        None,
        "A DCGM exporter endpoint, e.g. http://127.0.0.1:9400/metrics; used for GPUs NVML does not show.",
        "URL",
    ),
    Option(
        "scrape_interval",
        "--scrape-interval",
        parse_duration,
        5.0,
        "How often to scrape --engine-metrics and --dcgm-metrics.",
        "DURATION",
    ),
    Option(
        "engine_pid",
        "--engine-pid",
        parse_pid,
        None,
        "PID of the serving process; its GPUs (it and its children) are stamped on its spans. "
        "Unset: every GPU on the node.",
        "PID",
    ),
    Option(
        "no_gpu",
        "--no-gpu",
        parse_bool,
        False,
        "Do not sample GPUs through NVML (relay and scrape only).",
        is_switch=True,
    ),
    Option(
        "spool_dir",
        "--spool-dir",
        parse_text,
        _default_spool_dir,
        "Directory holding batches not yet delivered to the server.",
        "DIR",
    ),
    Option(
        "spool_max_bytes",
        "--spool-max-bytes",
        parse_size,
        512 * 2**20,
        "Bound on the spool (batches compressed, open segments not); past it the oldest batches "
        "are dropped and counted.",
        "SIZE",
    ),
    Option(
        "metrics_host",
        "--metrics-host",
        parse_text,
        "127.0.0.1",
        "Address of the collector's own Prometheus /metrics.",
        "ADDR",
    ),
    Option(
        "metrics_port",
        "--metrics-port",
        parse_port,
        9401,
        "Port of the collector's own Prometheus /metrics (9400 is DCGM exporter's).",
        "PORT",
    ),
    Option(
        "queue_max_bytes",
        "--queue-max-bytes",
        parse_size,
        32 * 2**20,
        "Bound on GPU samples and scrapes waiting in memory to be spooled; past it new ones are "
        "dropped and counted.",
        "SIZE",
    ),
    Option(
        "batch_max_bytes",
        "--batch-max-bytes",
        parse_size,
        4 * 2**20,
        "Largest uncompressed batch sent to the server in one request.",
        "SIZE",
    ),
    Option(
        "flush_interval",
        "--flush-interval",
        parse_duration,
        5.0,
        "Longest data waits in the spool's open segment before it is sealed into a batch and sent.",
        "DURATION",
    ),
    Option(
        "export_timeout",
        "--export-timeout",
        parse_duration,
        10.0,
        "Deadline for delivering one batch, retries included, before it waits in the spool.",
        "DURATION",
    ),
)


@dataclass(frozen=True)
class CollectorConfig:
    """Validated settings of one collector process. Durations in seconds, sizes in bytes."""

    server: str
    token: str | None = None
    cluster: str = "default"
    deployment: str | None = None
    model: str | None = None
    instance: str = "localhost"
    host_name: str = "localhost"
    otlp_host: str = "127.0.0.1"
    otlp_port: int = 4318
    interval: float = 1.0
    energy_interval: float = 60.0
    process_interval: float = 30.0
    engine_metrics: str | None = None
    dcgm_metrics: str | None = None
    scrape_interval: float = 5.0
    engine_pid: int | None = None
    no_gpu: bool = False
    spool_dir: str = field(default_factory=_default_spool_dir)
    spool_max_bytes: int = 512 * 2**20
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9401
    queue_max_bytes: int = 32 * 2**20
    batch_max_bytes: int = 4 * 2**20
    flush_interval: float = 5.0
    export_timeout: float = 10.0

    def __post_init__(self) -> None:
        # Cross-field rules; single values were checked by their parsers.
        if self.batch_max_bytes > self.queue_max_bytes:
            raise ConfigError("--batch-max-bytes must not exceed --queue-max-bytes")
        if self.energy_interval < self.interval or self.process_interval < self.interval:
            raise ConfigError("--energy-interval and --process-interval must not be shorter than --interval")
        if self.spool_max_bytes < self.batch_max_bytes:
            raise ConfigError("--spool-max-bytes must be at least --batch-max-bytes")

    @property
    def spool_path(self) -> Path:
        return Path(self.spool_dir)


def build_config(values: Mapping[str, str | None], environ: Mapping[str, str]) -> CollectorConfig:
    """Merge flag values (``None`` = not given) over ``INFERWATCH_COLLECTOR_*`` over defaults.

    Raises ConfigError naming the flag and the environment variable of the first bad value.
    """
    settled: dict[str, Any] = {}
    defaulted: set[str] = set()
    for opt in OPTIONS:
        raw = values.get(opt.attr)
        source = opt.flag
        if raw is None and opt.env in environ:
            raw, source = environ[opt.env], opt.env
        if raw is None:
            settled[opt.attr] = opt.default() if callable(opt.default) else opt.default
            defaulted.add(opt.attr)
            continue
        try:
            settled[opt.attr] = opt.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if settled["server"] is None:
        raise ConfigError(f"--server (or {ENV_PREFIX}SERVER) is required")
    for attr in ("energy_interval", "process_interval"):  # a slower --interval slows them too
        if attr in defaulted:
            settled[attr] = max(settled[attr], settled["interval"])
    return CollectorConfig(**settled)


def option_by_flag(flag: str) -> Option:
    return next(o for o in OPTIONS if o.flag == flag)


def documented_env_vars() -> Sequence[str]:
    """Every environment variable the collector reads, for the docs test."""
    return [o.env for o in OPTIONS]
