"""`inferwatch demo` — the server on the embedded store, fed a simulated week of a mixed GPU
fleet through its own OTLP/HTTP endpoints, then serving until Ctrl-C.

The newest simulated day is fed first and the dashboard URL printed as soon as it is in;
the older days follow in the background while pages say how many are in."""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from api.commands.common import settings_from_args
from api.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from api.demo import DemoInfo, Loading
    from api.demo.datadir import Marker
    from api.settings import Settings
    from api.store import Store

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("inferwatch-demo-data")
DEFAULT_SEED = 7
WEEK_HOURS = 168


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the server with a simulated week of a mixed GPU fleet",
        description="Start the server on the embedded store, feed it a simulated week of a mixed GPU "
        "fleet (H100, A100 and L4; vLLM and SGLang) through its own OTLP/HTTP endpoints, print the "
        "dashboard URL and serve until Ctrl-C. Every simulated row has the cluster "
        "'demo (simulated)'. A data directory that already holds the simulated week is served as is.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"demo data directory (default ./{DEFAULT_DATA_DIR}; INFERWATCH_DATA_DIR is not used, so the "
        "demo never writes into real data)",
    )
    parser.add_argument("--host", help="address to bind (env INFERWATCH_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (env INFERWATCH_PORT, default 8000)")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="DEBUG, INFO, WARNING or ERROR (default WARNING: the demo says what it does itself)",
    )
    parser.add_argument(
        "--hours",
        type=int,
        default=WEEK_HOURS,
        help=f"hours to simulate, ending now (default {WEEK_HOURS}: a week)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="simulation seed (default %(default)s)"
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="simulate and feed afresh even if the data directory holds the demo already",
    )
    parser.set_defaults(func=run)


def demo_settings(args: argparse.Namespace) -> Settings:
    """The server's settings, forced onto the embedded store and SQLite in the demo directory."""
    settings = settings_from_args(args)
    return settings.model_copy(update={"clickhouse_url": "", "database_url": ""})


def build_app(settings: Settings, info: DemoInfo, *, store: Store | None = None) -> FastAPI:
    """The ordinary app, marked as the demo's (`app.state.demo`, see `api.demo`)."""
    from api.app import create_app

    app = create_app(settings, store=store)
    app.state.demo = info
    return app


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.demo import SIMULATED_CLUSTER, DemoInfo, Loading
    from api.demo.datadir import Marker, Plan, plan, read_marker, wipe, write_marker
    from api.demo.week import DAY_MINUTES, GPU_INTERVAL_S

    began = time.monotonic()
    if not 1 <= args.hours <= 24 * 30:
        raise ConfigError("--hours must be between 1 and 720")
    settings = demo_settings(args)
    data_dir = settings.data_dir
    now = int(time.time())
    minutes = args.hours * 60
    action, why = plan(data_dir, seed=args.seed, minutes=minutes, now_s=now, reset=args.reset)
    if action is Plan.FEED:
        if read_marker(data_dir) is not None:
            wipe(data_dir)
        end = now - now % 60
        marker = Marker(seed=args.seed, start_s=end - 60 * minutes, minutes=minutes, complete=False)
        write_marker(data_dir, marker)
    else:
        found = read_marker(data_dir)
        assert found is not None
        marker = found
    _check_port_free(settings.host, settings.port)
    feed = action is Plan.FEED
    info = DemoInfo(
        cluster=SIMULATED_CLUSTER,
        start=datetime.fromtimestamp(marker.start_s, UTC),
        end=datetime.fromtimestamp(marker.end_s, UTC),
        seed=marker.seed,
        gpu_interval_s=GPU_INTERVAL_S,
        loading=Loading(days=-(-marker.minutes // DAY_MINUTES)) if feed else None,
    )
    _say(
        f"inferwatch demo: data directory {data_dir.resolve()} ({why}); simulated window "
        f"{info.start:%a %d %b %H:%M} – {info.end:%a %d %b %H:%M} UTC, cluster '{SIMULATED_CLUSTER}'"
    )
    app = build_app(settings, info)
    if feed:
        _seed(app, marker.seed)
    level = settings.log_level.lower()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            access_log=False,
            log_level="warning" if level == "info" else level,
        )
    )
    feeder = _Feeder(server, settings, marker, info.loading, began=began)
    _serve_until_interrupted(server, feeder)
    return feeder.exit_code


def _serve_until_interrupted(server: uvicorn.Server, feeder: _Feeder) -> None:
    """Serve in a thread and wait here for Ctrl-C or SIGTERM, then shut down gracefully.

    uvicorn only installs its signal handlers on the main thread; keeping them off it means
    Ctrl-C ends the demo quietly instead of being re-raised once the server has stopped."""
    thread = threading.Thread(target=server.run, name="demo-server")

    def terminate(signum: int, frame: object) -> None:
        server.should_exit = True

    previous = signal.signal(signal.SIGTERM, terminate)
    thread.start()
    threading.Thread(target=feeder.run, name="demo-feeder", daemon=True).start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        _say("\ninferwatch demo: stopping")
        server.should_exit = True
        feeder.stop()
        thread.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
        feeder.stop()
    if not server.started and feeder.exit_code == 0:
        feeder.exit_code = 1  # the server could not start; uvicorn said why


class _Feeder:
    """Waits for the server, runs the feeding process, says when the dashboard is ready:
    once the newest day is in (the rest keeps loading), or at once when nothing is fed."""

    def __init__(
        self,
        server: uvicorn.Server,
        settings: Settings,
        marker: Marker,
        loading: Loading | None,
        *,
        began: float,
    ) -> None:
        self.server = server
        self.settings = settings
        self.marker = marker
        self.loading = loading
        self.began = began
        self.exit_code = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._ready_said = False

    def run(self) -> None:
        # The feeding process simulates the week while the server starts, then waits for it.
        if self.loading is not None and not self._feed(_local_url(self.settings.host, self.settings.port)):
            self.exit_code = 1
            _say("inferwatch demo: stopping; run `inferwatch demo --reset` to try again")
            self.server.should_exit = True
            return
        if self._stopping.is_set():
            return
        if not self._ready_said:
            self._say_ready()
        elif self.loading is not None:
            _say(
                f"inferwatch demo: all {self.loading.days} days are in after "
                f"{time.monotonic() - self.began:.0f} s; the next `inferwatch demo` serves the same data."
            )

    def _say_ready(self) -> None:
        if not self._wait_for_server():
            return
        self._ready_said = True
        loading = self.loading
        rest = loading.days - loading.days_in if loading is not None else 0
        newest = " with the newest day in" if rest else ""
        days = f"{rest} older days load" if rest > 1 else "older day loads"
        later = f"  The {days} in the background; pages say how many days are in.\n" if rest else ""
        again = (
            "once all days are in, the next `inferwatch demo` serves the same data"
            if rest
            else "the next `inferwatch demo` serves the same data"
        )
        _say(
            f"\ninferwatch demo: ready in {time.monotonic() - self.began:.0f} s{newest}. "
            f"Dashboard: {self.settings.base_url}/\n{later}"
            "  Every row is labelled cluster 'demo (simulated)'; the SLOs and GPU prices under Settings "
            f"are demo values. Ctrl-C stops the server; {again}."
        )

    def _wait_for_server(self) -> bool:
        """Whether the server started (False: it is stopping, or could not start)."""
        while not self.server.started:
            if self._stopping.wait(0.05) or self.server.should_exit:
                return False
        return not self._stopping.is_set()

    def _feed(self, url: str) -> bool:
        """Run the feeding process to its end; False if it failed (it said why)."""
        from api.demo.datadir import write_marker
        from api.demo.feed import REJECTED_SOME

        loading = self.loading
        assert loading is not None
        if self._stopping.is_set():
            return True
        status_read, status_write = os.pipe()
        command = [
            sys.executable,
            "-m",
            "api.demo.feed",
            "--url",
            url,
            "--start",
            str(self.marker.start_s),
            "--minutes",
            str(self.marker.minutes),
            "--seed",
            str(self.marker.seed),
            "--status-fd",
            str(status_write),
        ]
        try:
            self._process = subprocess.Popen(command, pass_fds=(status_write,))
        finally:
            os.close(status_write)
        announced = False
        with os.fdopen(status_read, "rb", buffering=0) as status:
            pending = b""
            while True:
                if not announced and self.server.started:
                    announced = True
                    _say(
                        f"inferwatch demo: server up at {self.settings.base_url} after "
                        f"{time.monotonic() - self.began:.1f} s; feeding it the simulated fleet's telemetry"
                    )
                if not select.select([status], [], [], 0.05)[0]:
                    continue
                chunk = status.read(4096)
                if not chunk:
                    break  # the feeding process ended
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._status(line.decode())
        self._process.wait()
        if self._stopping.is_set():
            return True  # interrupted: the marker stays incomplete, so the next run feeds again
        if self._process.returncode not in (
            0,
            REJECTED_SOME,
        ):  # it said why; with some rejected, serve the rest
            return False
        write_marker(self.settings.data_dir, _completed(self.marker))
        loading.days_in = loading.days
        return True

    def _status(self, line: str) -> None:
        """A `days N` line from the feeding process: N days are in."""
        loading = self.loading
        word, _, number = line.partition(" ")
        if loading is None or word != "days" or not number.isdigit():
            return
        loading.days_in = min(int(number), loading.days)
        if not self._ready_said and not loading.done:
            self._say_ready()

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _seed(app: FastAPI, seed: int) -> None:
    """Save the demo's SLOs, prices and alert rules in its (fresh) metadata database."""
    from api.demo.fleet import build_fleet
    from api.demo.seed import seed_metadata

    with app.state.meta.session() as session:
        seed_metadata(session, build_fleet(seed))


def _completed(marker: Marker) -> Marker:
    from dataclasses import replace

    return replace(marker, complete=True)


def _local_url(host: str, port: int) -> str:
    """Where this machine reaches the server (PUBLIC_URL may name a proxy in front)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pass --port") from exc


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
