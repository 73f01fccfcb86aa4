"""`make bench`: run every benchmark (each in its own process, each printing its table),
then print one table of every result. Dated results are kept by hand in bench/RESULTS.md."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

from bench.common import OUT, Result, machine, print_table

BENCHMARKS = ("ingest", "storage", "collector", "findings", "web")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for stale in OUT.glob("*.json"):
        stale.unlink()
    failed = []
    for name in BENCHMARKS:
        module = f"bench.{name}"
        try:
            __import__(module)
        except ModuleNotFoundError:
            print(f"\n(no {module} yet)")
            continue
        print(f"\n=== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module], check=False).returncode != 0:
            failed.append(name)
    results = []
    for path in sorted(OUT.glob("*.json")):
        results += [Result(**r) for r in json.loads(path.read_text())]
    print(f"\n\n{'=' * 30}\ninferwatch benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}")
    print_table(
        "all results (medians)",
        [Result(r.bench, f"{r.bench}: {r.case}", r.value, r.unit, r.target, r.note) for r in results],
    )
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
