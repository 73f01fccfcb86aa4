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
they show include one for which `is_simulated_cluster` is true. While the demo still feeds
older days, `DemoInfo.loading` says how many are in and pages add `loading_note` to the
banner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

SIMULATED_CLUSTER = "demo (simulated)"
SIMULATED_ATTRIBUTE = "inferwatch.simulated"


def is_simulated_cluster(cluster: str) -> bool:
    """True for a cluster name the demo uses (any name ending in "(simulated)")."""
    return cluster.strip().endswith("(simulated)")


@dataclass(slots=True)
class Loading:
    """How much of the simulated window is in, day by day from the newest (the demo feeds
    the newest day first). Updated by the demo as each day is in."""

    days: int
    days_in: int = 0

    @property
    def done(self) -> bool:
        return self.days_in >= self.days

    def note(self) -> str:
        """What pages say while days are missing ("" once all are in)."""
        if self.done:
            return ""
        return (
            f"Still loading: {self.days_in} of {self.days} simulated days are in (the newest first); "
            "figures cover those days only until the rest are in."
        )


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
    loading: Loading | None = None
    """While the demo feeds: how many days are in. None: the whole window is in."""


def loading_note(state: Any) -> str:
    """The "still loading" note for an app's `state` ("" unless a demo is still feeding)."""
    info = getattr(state, "demo", None)
    loading = getattr(info, "loading", None)
    return loading.note() if isinstance(loading, Loading) else ""


__all__ = [
    "SIMULATED_ATTRIBUTE",
    "SIMULATED_CLUSTER",
    "DemoInfo",
    "Loading",
    "is_simulated_cluster",
    "loading_note",
]
