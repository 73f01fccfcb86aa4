"""`make faults`: run every fault scenario (tests/faults/scenarios.py) with real processes and
write the table of what happened into docs/reliability.md, between its markers.

    python scripts/faults.py            # all scenarios, table written
    python scripts/faults.py --only server_killed --no-write

Exits 1 if any scenario lost an acknowledged item or stored one twice.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.scenarios import ALL, Result, run  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
BEGIN = "<!-- faults:begin (written by scripts/faults.py; do not edit by hand) -->"
END = "<!-- faults:end -->"


def table(results: list[Result], seconds: dict[str, float]) -> str:
    lines = [
        "| fault | what happened | sent | acknowledged | stored "
        "| stored twice | lost | dropped, counted | ok |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.fault} | {r.happened}{'; ' + '; '.join(r.problems) if r.problems else ''} "
            f"| {r.sent} | {r.acknowledged} | {r.stored} | {r.duplicates} | {r.lost} | {r.counted_drops} "
            f"| {'yes' if r.ok else '**no**'} |"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    total = sum(seconds.values())
    lines.append("")
    lines.append(
        f"_Written by `make faults` on {stamp} ({platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}); {total:.0f} s for {len(results)} scenarios._"
    )
    return "\n".join(lines)


def write(doc: Path, text: str) -> None:
    body = doc.read_text()
    if BEGIN not in body or END not in body:
        raise SystemExit(f"{doc} lacks the markers {BEGIN!r} … {END!r}")
    head, rest = body.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=ALL, help="run only this scenario (repeatable)")
    parser.add_argument("--no-write", action="store_true", help="print the table; leave the doc alone")
    args = parser.parse_args(argv)
    results, seconds = [], {}
    for name in args.only or ALL:
        started = time.monotonic()
        print(f"{name} …", flush=True)
        result = run(name)
        seconds[name] = time.monotonic() - started
        print(f"  {'ok' if result.ok else 'FAILED'} in {seconds[name]:.1f} s: {result.happened}", flush=True)
        results.append(result)
    text = table(results, seconds)
    print(text)
    if not args.no_write:
        write(DOC, text)
        print(f"written to {DOC.relative_to(ROOT)}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
