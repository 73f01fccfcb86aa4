"""Regenerate docs/screenshots/*.png: the main pages of `inferwatch demo`, light and dark.

Starts `inferwatch demo` (a simulated week fed through the real OTLP ingest) in a
temporary data directory on a free loopback port, waits for it, and photographs each page
with headless Debian Chromium through Playwright (`apt-get install -y chromium`).

Run: `python scripts/screenshots.py [--out docs/screenshots] [--hours 168] [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("INFERWATCH_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = [
    ("overview", "/?window=7d"),
    ("fleet", "/fleet?window=7d"),
    ("deployments", "/deployments?window=7d"),
    ("deployment", None),  # the first deployment, found from /deployments.json
    ("findings", "/findings?window=7d"),
    ("finding", None),  # the first finding
    ("requests", "/requests?window=24h&sort=e2e"),
    ("settings", "/settings/prices"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait until the demo has fed its week: GPU-hours stop growing between two polls."""
    deadline = time.monotonic() + timeout_s
    last = -1.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"inferwatch demo exited with {proc.returncode}")
        try:
            hours = float(
                httpx.get(base + "/fleet.json?window=7d", timeout=60).json()["fleet"]["totals"]["gpu_hours"]
            )
        except (httpx.HTTPError, KeyError, ValueError):
            hours = -1.0
        if hours > 0 and hours == last:
            return
        last = hours
        time.sleep(15)
    raise SystemExit(f"the demo was still feeding after {timeout_s:.0f} s")


def resolve(base: str) -> dict[str, str]:
    paths = {name: path for name, path in PAGES if path}
    for name, path in list(paths.items()):
        if httpx.get(base + path, timeout=120).status_code != 200:
            print(f"skipped {name}: {path} does not answer 200 now")
            del paths[name]
    deps = httpx.get(base + "/deployments.json?window=7d", timeout=60).json()["deployments"]
    if deps:
        paths["deployment"] = f"/deployments/{deps[0]['cluster']}/{deps[0]['deployment']}?window=7d"
    reply = httpx.get(base + "/findings.json?window=7d", timeout=120)
    found = reply.json().get("findings") if reply.status_code == 200 else None
    if found:
        paths["finding"] = f"/findings/{found[0]['finding']['id']}?window=7d"
    return paths


def shoot(base: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    paths = resolve(base)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for theme in ("light", "dark"):
            context = browser.new_context(viewport={"width": 1440, "height": 1000}, color_scheme=theme)
            page = context.new_page()
            for name, path in paths.items():
                page.goto(base + path, wait_until="load", timeout=120_000)
                page.wait_for_timeout(300)
                for chart in page.locator(".chart").all():
                    chart.locator(".main-svg").first.wait_for(timeout=30_000)
                target = out / (f"{name}.png" if theme == "light" else f"{name}-dark.png")
                page.screenshot(path=str(target), full_page=False)
                written.append(target)
                print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
            context.close()
        browser.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--hours", type=int, default=168, help="hours the demo simulates (default a week)")
    parser.add_argument("--keep", type=Path, default=None, help="demo data directory to reuse")
    args = parser.parse_args()
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="inferwatch-screenshots-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "api.cli",
        "demo",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--hours",
        str(args.hours),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        wait_ready(base, proc, timeout_s=900)
        shoot(base, args.out)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
