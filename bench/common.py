"""Helpers every benchmark uses: repeat-and-take-the-median, one-core pinning, the
machine description, and the summary file `make bench` collates into one table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


@dataclass
class Result:
    bench: str
    case: str
    value: float
    unit: str
    target: str = ""
    note: str = ""


def pin_one_core() -> str:
    """Pin this process to one CPU so 'per core' figures mean one core."""
    try:
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned"


def median_of(fn: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    """Run `fn` (which returns a measurement) `repeats` times; the median and all values."""
    values = [fn() for _ in range(repeats)]
    return statistics.median(values), values


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        load = f", load average {os.getloadavg()[0]:.1f}"
    except OSError:
        load = ""
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}{load}"


def print_table(title: str, results: list[Result]) -> None:
    width = max(len(r.case) for r in results) if results else 10
    print(f"\n{title}")
    print(f"{'case':<{width}}  {'median':>14}  {'unit':<10}  {'target':<14}  note")
    for r in results:
        print(f"{r.case:<{width}}  {r.value:>14,.1f}  {r.unit:<10}  {r.target:<14}  {r.note}")


def save(name: str, results: list[Result]) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
