"""inferwatch collector: the sidecar beside an inference server.

It samples the node's GPUs through NVML, relays the engine's OTLP spans, scrapes the
engine's Prometheus endpoint, and ships everything to the inferwatch server as OTLP/HTTP,
spooling to disk while the server is away. Importing this package starts nothing.
"""

from functools import cache
from importlib import metadata


@cache
def collector_version() -> str:
    """The installed inferwatch version, or ``0.0.0+local`` when running from a checkout."""
    try:
        return metadata.version("inferwatch")
    except metadata.PackageNotFoundError:
        return "0.0.0+local"
