"""The demo's data directory: what it holds, and when it may be wiped.

The demo writes `demo.json` into its data directory before it feeds anything and marks it
complete once the whole window is in. A directory is only ever wiped when it holds that
file, so pointing `--data-dir` at real data is refused instead of overwritten.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from api.errors import ConfigError

MARKER = "demo.json"
FORMAT = 1
STALE_AFTER_S = 86_400
"""A simulated week that ended longer ago than this is simulated again: the dashboards
look at recent windows, which it would no longer fill."""


class DataDirError(ConfigError):
    """The directory holds something that is not the demo's."""


@dataclass(frozen=True, slots=True)
class Marker:
    seed: int
    start_s: int
    minutes: int
    complete: bool
    format: int = FORMAT

    @property
    def end_s(self) -> int:
        return self.start_s + 60 * self.minutes


class Plan(Enum):
    FEED = "feed"
    REUSE = "reuse"


def read_marker(data_dir: Path) -> Marker | None:
    path = data_dir / MARKER
    if not path.is_file():
        return None
    try:
        return Marker(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return Marker(seed=0, start_s=0, minutes=0, complete=False, format=0)  # unreadable: ours, redo it


def write_marker(data_dir: Path, marker: Marker) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (MARKER + ".tmp")
    tmp.write_text(json.dumps(asdict(marker), indent=2) + "\n")
    tmp.replace(data_dir / MARKER)


def plan(data_dir: Path, *, seed: int, minutes: int, now_s: int, reset: bool) -> tuple[Plan, str]:
    """Whether to feed a fresh window (wiping the directory first) or serve what is there,
    and why. Raises DataDirError for a non-empty directory without a demo marker."""
    marker = read_marker(data_dir)
    if marker is None:
        if data_dir.exists() and any(data_dir.iterdir()):
            raise DataDirError(
                f"{data_dir} is not empty and holds no {MARKER}: it is not a demo data directory. "
                "Pass --data-dir with a new or empty directory."
            )
        return Plan.FEED, f"a fresh data directory {data_dir}"
    if reset:
        return Plan.FEED, "--reset"
    if not marker.complete or marker.format != FORMAT:
        return Plan.FEED, "the last demo run stopped before its data was all in"
    if (marker.seed, marker.minutes) != (seed, minutes):
        return Plan.FEED, "it holds a different simulation (seed or --hours)"
    if now_s - marker.end_s > STALE_AFTER_S:
        return Plan.FEED, "its simulated week ended more than a day ago"
    return Plan.REUSE, f"{data_dir} already holds the simulated window"


def wipe(data_dir: Path) -> None:
    """Remove a demo data directory (only one with a marker) and recreate it empty."""
    if read_marker(data_dir) is None:
        raise DataDirError(f"refusing to wipe {data_dir}: it holds no {MARKER}")
    shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
