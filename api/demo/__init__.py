"""`inferwatch demo`: a simulated week of a mixed GPU inference fleet, fed to a running
server through the real OTLP/HTTP ingest path.

How the simulated data is labelled (the contract the web pages read):

- every resource the demo sends carries `inferwatch.cluster = "demo (simulated)"`
  (`SIMULATED_CLUSTER`), so every stored row — GPU samples, requests, engine metrics and
  the rollups — has that cluster, whichever process serves it later;
- every resource also carries the attribute `inferwatch.simulated = true`
  (`SIMULATED_ATTRIBUTE`) for any other OTLP consumer;
- the `inferwatch demo` process sets `app.state.demo` to a `DemoInfo`; a plain
  `inferwatch serve` leaves it unset (read it with `getattr(app.state, "demo", None)`).

Pages show a "simulated data" banner when `app.state.demo` is set or when the clusters
they show include one for which `is_simulated_cluster` is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

SIMULATED_CLUSTER = "demo (simulated)"
SIMULATED_ATTRIBUTE = "inferwatch.simulated"


def is_simulated_cluster(cluster: str) -> bool:
    """True for a cluster name the demo uses (any name ending in "(simulated)")."""
    return cluster.strip().endswith("(simulated)")


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What `app.state.demo` holds in an `inferwatch demo` process."""

    cluster: str
    start: datetime
    """First simulated instant (UTC)."""
    end: datetime
    """End of the simulated window (UTC, exclusive)."""
    seed: int
    gpu_interval_s: int
    """Seconds between simulated GPU samples (a real collector samples every second)."""
    simulated: bool = True


__all__ = ["SIMULATED_ATTRIBUTE", "SIMULATED_CLUSTER", "DemoInfo", "is_simulated_cluster"]
