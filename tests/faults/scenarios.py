"""Fault scenarios with real processes, shared by `scripts/faults.py` (which writes the table
in docs/reliability.md) and the tests in this directory (which check the same runs in CI).

Each scenario sends spans with unique ids, through the collector as an engine would, counts
what was sent, what was acknowledged (answered 200 by whoever took it), and what was stored
(read afterwards from the server's store with SQL), and returns a `Result`. The processes
are the real ones: `inferwatch serve` and `python -m collector`, killed with SIGKILL and
restarted. A disk that fills is a real tmpfs of a few hundred KiB, mounted in a private
mount namespace (`unshare -rm`, no root needed where user namespaces are allowed); the
store's disk filling up is the store becoming unavailable.

The webhook scenario runs in this process: the real scheduler and webhook deliverer against
real sockets that hang or answer garbage, with a job that must keep running on time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.otlp import NS, traces_request, vllm_span

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SPANS_PER_BATCH = 20


@dataclass
class Result:
    fault: str
    happened: str
    sent: int
    acknowledged: int
    stored: int
    duplicates: int
    lost: int  # acknowledged but not stored
    counted_drops: int = 0  # dropped by the collector on purpose, and counted in its metrics
    problems: list[str] = field(default_factory=list)  # anything else the scenario found wrong

    @property
    def ok(self) -> bool:
        """Nothing stored twice; every acknowledged item stored or counted as dropped."""
        return self.duplicates == 0 and self.lost <= self.counted_drops and not self.problems


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


class Tmpfs:
    """A tmpfs of `size_kib` at `path`, visible only to processes started through `wrap`:
    a holder process keeps a private user+mount namespace alive; others join it with nsenter.
    From outside, the mount is reachable as `/proc/<holder>/root/<path>`."""

    def __init__(self, path: Path, size_kib: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        script = f"mount -t tmpfs -o size={size_kib}k tmpfs {path} && echo ready && exec sleep 100000"
        try:
            self._holder = subprocess.Popen(
                ["unshare", "-rm", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except FileNotFoundError as exc:
            raise RuntimeError(
                "the fault scenarios need unshare(1) (util-linux) to mount a small tmpfs"
            ) from exc
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline()
        if line.strip() != b"ready":
            err = self._holder.stderr.read().decode() if self._holder.stderr else ""
            raise RuntimeError(
                "cannot mount a tmpfs in a private namespace (unshare -rm): "
                f"{err.strip() or 'no output'}; user namespaces must be allowed"
            )

    def wrap(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self._holder.pid), "-U", "-m", "--preserve-credentials", *argv]

    @property
    def outside(self) -> Path:
        return Path(f"/proc/{self._holder.pid}/root") / str(self.path).lstrip("/")

    def fill(self) -> Path:
        """Write a file until the disk is full; returns it (delete it to free the space)."""
        filler = self.outside / "filler"
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(bytes(64 * 1024))
                    fh.flush()
            except OSError:
                pass
        return filler

    def close(self) -> None:
        self._holder.kill()
        self._holder.wait()


_STARTED: list[Process] = []  # every child started, so `run` can end them whatever happens


class Process:
    """A child process with its output in a log file."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.argv, self.log, self.env = argv, log, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT
            )
        _STARTED.append(self)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 20) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")}
    env.update(extra)
    return env


class Server(Process):
    """`inferwatch serve` on a loopback port (local mode: no token), scheduler off."""

    def __init__(
        self,
        data_dir: Path,
        log: Path,
        wrap: Callable[[list[str]], list[str]] = lambda a: a,
        **env: str,
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"
        self._wrap = wrap
        argv = wrap([PYTHON, "-m", "api.cli", "serve", "--data-dir", str(data_dir), "--port", str(self.port)])
        super().__init__(
            argv,
            log,
            _env(INFERWATCH_NOTIFY__SCHEDULER_ENABLED="false", INFERWATCH_LOG_LEVEL="WARNING", **env),
        )

    def start(self) -> None:
        super().start()

        def up() -> bool:
            if not self.alive():
                raise RuntimeError(f"the server exited:\n{self.tail()}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the server to answer /healthz", poll_s=0.1)

    def replayed_rows(self) -> int:
        """Request rows the server found in its write-ahead log at start."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        return int(
            sum(
                s.value
                for s in samples
                if s.name == "inferwatch_wal_replayed_rows_total" and s.labels.get("table") == "requests"
            )
        )

    def stored_keys(self) -> list[str]:
        """trace id + span id of every stored request row, read with SQL from the store the
        server wrote (after it stopped: the embedded store is one process's at a time)."""
        assert not self.alive(), "stop the server first"
        code = (
            "import json, sys\n"
            "from pathlib import Path\n"
            "from api.settings import Settings\n"
            "from api.store import open_store\n"
            "from api.store.gateway import Query\n"
            "store = open_store(Settings(data_dir=Path(sys.argv[1])))\n"
            "rows = store.rows(Query('faults.keys', 'SELECT concat(trace_id, span_id) AS k FROM requests'))\n"
            "print(json.dumps([r['k'] for r in rows]))\n"
        )
        out = subprocess.run(
            self._wrap([PYTHON, "-c", code, str(self.data_dir)]),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=_env(),
            timeout=120,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"cannot read the store: {out.stderr[-2000:]}")
        return list(json.loads(out.stdout.strip().splitlines()[-1]))


class Collector(Process):
    """`python -m collector` relaying spans to `server_url`, spooling in `spool_dir`."""

    def __init__(
        self,
        server_url: str,
        spool_dir: Path,
        log: Path,
        *,
        spool_max_bytes: int = 64 * 2**20,
        flush_interval: str = "100ms",
        wrap: Callable[[list[str]], list[str]] = lambda a: a,
    ) -> None:
        self.otlp_port, self.metrics_port = free_port(), free_port()
        self.spool_dir = spool_dir
        flags = {
            "--server": server_url,
            "--cluster": "faults",
            "--deployment": "faults",
            "--host-name": "fault-node",
            "--otlp-port": str(self.otlp_port),
            "--metrics-port": str(self.metrics_port),
            "--spool-dir": str(spool_dir),
            "--spool-max-bytes": str(spool_max_bytes),
            "--flush-interval": flush_interval,
            "--export-timeout": "2s",
            "--log-level": "WARNING",
        }
        argv = wrap([PYTHON, "-m", "collector", "--no-gpu", *(x for kv in flags.items() for x in kv)])
        super().__init__(argv, log, _env())
        self.relay = f"http://127.0.0.1:{self.otlp_port}/v1/traces"

    def start(self) -> None:
        super().start()

        def up() -> bool:
            if not self.alive():
                raise RuntimeError(f"the collector exited:\n{self.tail()}")
            try:
                httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1)
                return True
            except httpx.HTTPError:
                return False

        wait_for(up, 30, "the collector's metrics endpoint", poll_s=0.1)

    def metrics(self) -> dict[str, float]:
        """Its counters summed over labels, plus `…{reason=…}` for the drop counters."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
                if "reason" in sample.labels:
                    key = f"{sample.name}{{reason={sample.labels['reason']}}}"
                    out[key] = out.get(key, 0.0) + sample.value
        return out

    def settled(self) -> bool:
        """Everything it took has left: delivered, refused, or dropped, none in the spool."""
        m = self.metrics()
        done = (
            m.get("inferwatch_collector_delivered_items_total", 0)
            + m.get("inferwatch_collector_rejected_items_total", 0)
            + m.get("inferwatch_collector_spool_dropped_items_total", 0)
            + m.get("inferwatch_collector_queue_dropped_items_total", 0)
        )
        return m.get("inferwatch_collector_spool_batches", 1) == 0 and done >= m.get(
            "inferwatch_collector_received_items_total", 0
        )

    def spooled_items(self) -> int:
        """Items in the batches on disk (the count is in each file's name)."""
        return sum(int(p.name.split(".")[2]) for p in self.spool_dir.glob("*.otlp.gz"))

    def segment_items(self) -> int:
        """Items written to the spool's segment files and not yet sealed into batches: each
        request the relay acknowledged is there first (read with the collector's own decoder)."""
        from collector.spool import decode_records

        items = 0
        for path in self.spool_dir.glob("*.seg"):
            bodies, _, _ = decode_records(path.read_bytes())
            items += sum(
                len(ss.spans)
                for body in bodies
                for rs in ExportTraceServiceRequest.FromString(body).resource_spans
                for ss in rs.scope_spans
            )
        return items


# --- the engine's side -------------------------------------------------------------------


class Engine:
    """Sends batches of vLLM-shaped spans, each span with a unique id, to one URL; keeps the
    keys it sent and the keys acknowledged (answered 200 with nothing rejected)."""

    def __init__(self, seed: int, padding: int = 0) -> None:
        self._random = random.Random(seed)
        self._padding = padding
        self.sent: list[str] = []
        self.acknowledged: list[str] = []
        self.refused = 0

    def batch(self) -> tuple[bytes, list[str]]:
        now = time.time_ns()
        spans, keys = [], []
        for i in range(SPANS_PER_BATCH):
            trace_id, span_id = self._random.randbytes(16), self._random.randbytes(8)
            extra = {"note": self._random.randbytes(self._padding).hex()} if self._padding else {}
            spans.append(
                vllm_span(
                    now - (i + 1) * NS,
                    queue=0.01,
                    ttft=0.1,
                    prefill=0.05,
                    decode=0.4,
                    e2e=0.5,
                    prompt=100,
                    output=50,
                    trace_id=trace_id,
                    span_id=span_id,
                )  # fmt: skip
            )
            for key, value in extra.items():
                kv = spans[-1].attributes.add(key=key)
                kv.value.string_value = value
            keys.append(trace_id.hex() + span_id.hex())
        request = traces_request([({"service.name": "vllm"}, spans)])
        return request.SerializeToString(), keys

    def send(self, url: str, batches: int, pause_s: float = 0.0) -> None:
        for _ in range(batches):
            body, keys = self.batch()
            self.sent.extend(keys)
            try:
                r = httpx.post(
                    url, content=body, headers={"Content-Type": "application/x-protobuf"}, timeout=10
                )
            except httpx.HTTPError:
                self.refused += len(keys)
            else:
                rejected = (
                    ExportTraceServiceResponse.FromString(r.content).partial_success.rejected_spans
                    if r.status_code == 200
                    else len(keys)
                )
                if r.status_code == 200 and rejected == 0:
                    self.acknowledged.extend(keys)
                else:
                    self.refused += len(keys)
            if pause_s:
                time.sleep(pause_s)


def tally(fault: str, happened: str, engine: Engine, stored: list[str], counted_drops: int = 0) -> Result:
    stored_set = set(stored)
    return Result(
        fault=fault,
        happened=happened,
        sent=len(engine.sent),
        acknowledged=len(engine.acknowledged),
        stored=len(stored_set),
        duplicates=len(stored) - len(stored_set),
        lost=len(set(engine.acknowledged) - stored_set),
        counted_drops=counted_drops,
    )


@contextmanager
def workdir(keep: Path | None = None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="inferwatch-faults-") as d:
        yield Path(d)


# --- the scenarios -----------------------------------------------------------------------


def server_killed(work: Path) -> Result:
    """The server is SIGKILLed while the collector delivers to it, then restarted."""
    server = Server(work / "server", work / "server.log")
    server.start()
    collector = Collector(server.url, work / "spool", work / "collector.log")
    collector.start()
    engine = Engine(seed=1)
    try:
        sender = threading.Thread(target=engine.send, args=(collector.relay, 30, 0.05))
        sender.start()
        wait_for(lambda: len(engine.acknowledged) >= 10 * SPANS_PER_BATCH, 30, "ten batches acknowledged")
        server.kill()
        killed_at = len(engine.acknowledged)
        sender.join()
        server.start()  # same port, same data directory
        replayed = server.replayed_rows()
        wait_for(collector.settled, 60, "the collector to deliver its spool")
        m = collector.metrics()
    finally:
        collector.stop()
        server.stop()
    failures = int(m.get("inferwatch_collector_export_failures_total", 0))
    happened = (
        f"server SIGKILLed while the collector delivered ({killed_at} spans acknowledged by then), "
        f"restarted on the same data, replaying {replayed} spans from its write-ahead log; "
        f"the collector met {failures} failed deliveries, kept the "
        "batches spooled and re-sent the same bytes"
    )
    return tally("server killed mid-ingest", happened, engine, server.stored_keys())


WAL_LIMIT = 64 * 1024


def store_unavailable(work: Path) -> Result:
    """The store's disk fills up under a running server, then is freed. The server's
    write-ahead log (on another disk) takes what arrives until it holds its limit, kept small
    here so the outage outlasts it; then the server refuses with 503."""
    disk = Tmpfs(work / "server" / "clickhouse", 64 * 1024)
    server = Server(
        work / "server", work / "server.log", wrap=disk.wrap, INFERWATCH_INGEST_WAL_MAX_BYTES=str(WAL_LIMIT)
    )
    try:
        server.start()
        collector = Collector(server.url, work / "spool", work / "collector.log")
        collector.start()
        engine = Engine(seed=2)
        try:
            engine.send(collector.relay, 5)
            wait_for(collector.settled, 30, "the first batches delivered")
            filler = disk.fill()
            engine.send(collector.relay, 10, 0.05)
            wait_for(
                lambda: collector.metrics().get("inferwatch_collector_export_failures_total", 0) >= 2,
                60,
                "the collector to meet the outage twice",
            )
            direct = httpx.post(
                server.url + "/v1/traces",
                content=engine.batch()[0],
                headers={"Content-Type": "application/x-protobuf"},
            )
            filler.unlink()
            wait_for(collector.settled, 60, "the collector to deliver its spool")
            m = collector.metrics()
        finally:
            collector.stop()
            server.stop()
        happened = (
            f"store's disk full: the server took spans into its write-ahead log until it held "
            f"its limit ({WAL_LIMIT // 1024} KiB), then answered {direct.status_code} "
            f"(Retry-After {direct.headers.get('retry-after')}); the collector kept "
            f"{int(m.get('inferwatch_collector_export_failures_total', 0))} refused deliveries spooled "
            "and delivered them once the disk was freed"
        )
        if direct.status_code != 503 or not direct.headers.get("retry-after"):
            happened += " — expected 503 with Retry-After"
            raise AssertionError(happened)
        return tally("store unavailable", happened, engine, server.stored_keys())
    finally:
        disk.close()


def spool_disk_full(work: Path) -> Result:
    """The collector's spool disk (256 KiB) fills while the server is away."""
    disk = Tmpfs(work / "spool", 256)
    try:
        server = Server(work / "server", work / "server.log")
        collector = Collector(server.url, work / "spool", work / "collector.log", wrap=disk.wrap)
        collector.start()
        engine = Engine(seed=3, padding=200)  # ~10 KiB a batch once compressed
        try:
            engine.send(collector.relay, 40, 0.02)
            wait_for(
                lambda: (
                    collector.metrics().get("inferwatch_collector_spool_dropped_items_total", 0) > 0
                    and collector.metrics().get("inferwatch_collector_queue_bytes", 1) == 0
                ),
                30,
                "the spool disk to fill",
            )
            at_full = collector.metrics()
            server.start()
            wait_for(collector.settled, 60, "the collector to deliver what it kept")
            engine.send(collector.relay, 5)  # room again: new batches are kept and delivered
            wait_for(collector.settled, 30, "the batches sent after the disk emptied")
            m = collector.metrics()
            half_written = sorted(p.name for p in disk.outside.glob("*.tmp"))
        finally:
            collector.stop()
            server.stop()
        reasons = {
            k.split("reason=")[1].rstrip("}"): int(v)
            for k, v in m.items()
            if k.startswith("inferwatch_collector_spool_dropped_items_total{")
        }
        drops = int(m.get("inferwatch_collector_spool_dropped_items_total", 0))
        refused = int(m.get("inferwatch_collector_relay_refused_items_total", 0))
        happened = (
            f"spool disk full after {int(at_full.get('inferwatch_collector_spooled_batches_total', 0))} "
            f"batches: {refused} spans the relay could not write were refused with 503 + Retry-After "
            f"(the engine keeps them; {engine.refused} refused in all), {drops} older spooled spans "
            f"dropped to make room and counted "
            f"({', '.join(f'{r}: {n}' for r, n in sorted(reasons.items()))}); "
            "the rest delivered once the server came; later batches kept again"
        )
        result = tally("collector spool disk full", happened, engine, server.stored_keys(), drops)
        if half_written:
            result.problems.append(f"half-written spool files left behind: {half_written}")
        return result
    finally:
        disk.close()


def collector_killed(work: Path) -> Result:
    """The collector is SIGKILLed holding a spool, restarted, and killed again mid-delivery.
    Last, one delivered batch file is put back, as a kill between the server's 200 and the
    file's removal leaves it: the re-sent batch must not be stored twice."""
    server = Server(work / "server", work / "server.log")
    collector = Collector(server.url, work / "spool", work / "collector.log")
    collector.start()
    engine = Engine(seed=4)
    engine.send(collector.relay, 20)
    wait_for(lambda: collector.spooled_items() == len(engine.acknowledged), 30, "every batch on disk")
    collector.kill()
    spooled = collector.spooled_items()
    oldest = min(collector.spool_dir.glob("*.otlp.gz"))
    kept = oldest.read_bytes()
    server.start()
    try:
        collector.start()  # delivers what the killed one left
        wait_for(lambda: collector.spooled_items() < spooled, 30, "the first delivery")
        collector.kill()  # again, mid-delivery
        left = collector.spooled_items()
        collector.start()
        wait_for(lambda: collector.spooled_items() == 0, 60, "the spool to empty")
        wait_for(collector.settled, 30, "the collector to settle")
        collector.stop()
        oldest.write_bytes(kept)  # delivered, but still on disk: as if killed before removing it
        collector.start()
        wait_for(lambda: collector.spooled_items() == 0, 60, "the re-sent batch")
        wait_for(collector.settled, 30, "the collector to settle")
    finally:
        collector.stop()
        server.stop()
    happened = (
        f"collector SIGKILLed with {spooled} spans spooled on disk (server away), restarted, "
        f"SIGKILLed again mid-delivery with {left} left, restarted: the rest delivered; "
        f"a delivered batch of {oldest.name.split('.')[2]} spans left on disk was sent again "
        "and stored once"
    )
    return tally("collector killed with a spool", happened, engine, server.stored_keys())


def collector_killed_unflushed(work: Path) -> Result:
    """The collector is SIGKILLed half a second after acknowledging spans, with the default
    --flush-interval of 5 s: they are not sealed into a batch yet. The relay acknowledges only
    what it has written to the spool's segment file, so the restart finds them there."""
    server = Server(work / "server", work / "server.log")
    collector = Collector(server.url, work / "spool", work / "collector.log", flush_interval="5s")
    collector.start()
    engine = Engine(seed=5)
    engine.send(collector.relay, 5, 0.05)
    wait_for(lambda: collector.spooled_items() == len(engine.acknowledged), 15, "the first flush")
    engine.send(collector.relay, 5, 0.05)
    time.sleep(0.5)
    collector.kill()
    sealed, unsealed = collector.spooled_items(), collector.segment_items()
    server.start()
    try:
        collector.start()
        wait_for(lambda: collector.spooled_items() == 0, 60, "the spool to empty")
        wait_for(collector.settled, 30, "the collector to settle")
    finally:
        collector.stop()
        server.stop()
    happened = (
        f"collector SIGKILLed 0.5 s after acknowledging its last spans, with --flush-interval 5s "
        f"(the default): of {len(engine.acknowledged)} acknowledged, {sealed} were sealed into "
        f"batches and {unsealed} only in the segment file the relay writes before it answers; "
        "the restart sealed that file and delivered all of them"
    )
    result = tally("collector killed before it flushed", happened, engine, server.stored_keys())
    if unsealed == 0:
        result.problems.append("nothing was unsealed at the kill: the scenario missed the window")
    if sealed + unsealed != len(engine.acknowledged):
        result.problems.append(
            f"{len(engine.acknowledged) - sealed - unsealed} acknowledged spans not on disk"
        )
    return result


SCENARIOS: dict[str, Callable[[Path], Result]] = {
    "server_killed": server_killed,
    "store_unavailable": store_unavailable,
    "spool_disk_full": spool_disk_full,
    "collector_killed": collector_killed,
    "collector_killed_unflushed": collector_killed_unflushed,
}


def run(name: str, keep: Path | None = None) -> Result:
    """One scenario in a fresh directory (or `keep`, left in place for inspection)."""
    with workdir(keep) as work:
        try:
            if name == "webhooks":
                from tests.faults.webhooks import bad_webhook_targets

                return bad_webhook_targets(work)
            return SCENARIOS[name](work)
        finally:
            while _STARTED:  # a scenario that failed half-way leaves nothing running
                _STARTED.pop().kill()


ALL = [*SCENARIOS, "webhooks"]


def as_row(result: Result) -> dict[str, Any]:
    return {
        "fault": result.fault,
        "happened": result.happened,
        "sent": result.sent,
        "acknowledged": result.acknowledged,
        "stored": result.stored,
        "duplicates": result.duplicates,
        "lost": result.lost,
        "counted_drops": result.counted_drops,
        "ok": result.ok,
    }
