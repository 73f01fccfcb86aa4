"""`inferwatch demo` as a user runs it: in its own process (chDB allows one data path per
process), on a short window of two days (a whole one and an hour)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    """`inferwatch demo` in a subprocess, its output collected line by line."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "demo", "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in the output:\n{''.join(self.lines)}")

    def said(self, text: str, timeout_s: float) -> str:
        """The line holding `text`, whether it came already or comes within `timeout_s`."""
        for line in self.lines:
            if text in line:
                return line
        return self.wait_for(text, timeout_s)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def demos() -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.kill()


def test_demo_feeds_the_newest_day_first_serves_it_early_and_serves_it_again_without_feeding(
    tmp_path: Path, demos: list[Demo]
) -> None:
    data_dir = tmp_path / "demo-data"
    first = Demo("--hours", "25", "--data-dir", str(data_dir))  # the newest day, then one hour
    demos.append(first)
    first.wait_for("server up", timeout_s=60)
    first.wait_for("day 1 of 2 in", timeout_s=120)
    ready = first.wait_for("ready in", timeout_s=30)
    assert "with the newest day in" in ready and f"Dashboard: {first.url}/" in ready
    first.wait_for("older day loads in the background", timeout_s=5)
    # The one-hour older day is fed in a second or two: its line and the feed's summary may
    # come before or after the ready line. Each is said once.
    assert " spans and " in first.said("inferwatch demo: fed", timeout_s=120)
    first.said("all 2 days are in", timeout_s=30)
    assert sum("day 2 of 2 in" in line for line in first.lines) == 1
    assert sum("inferwatch demo: fed" in line for line in first.lines) == 1
    assert httpx.get(f"{first.url}/healthz").json()["status"] == "ok"
    marker = json.loads((data_dir / "demo.json").read_text())
    assert marker["complete"] and marker["minutes"] == 25 * 60
    # The demo's GPU prices are saved settings (shown as configured, not defaults).
    prices = {p["gpu_model"]: p for p in httpx.get(f"{first.url}/api/v1/settings/prices").json()["items"]}
    assert (prices["h100-sxm"]["usd_per_hour"], prices["h100-sxm"]["source"]) == (2.49, "configured")
    assert first.interrupt() == 0

    again = Demo("--hours", "25", "--data-dir", str(data_dir))
    demos.append(again)
    assert "already holds" in again.wait_for("data directory", timeout_s=30)
    ready = again.wait_for("ready in", timeout_s=60)
    assert "newest day" not in ready
    assert not any("feeding" in line for line in again.lines)
    assert httpx.get(f"{again.url}/healthz").status_code == 200
    assert again.interrupt() == 0
