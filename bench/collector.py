"""Benchmark the collector: CPU and memory of GPU sampling, and span relay throughput.

    python bench/collector.py                 # 8 GPUs replayed from tests/fixtures/nvml, 60 s
    python bench/collector.py --real          # the real GPUs of this machine (NVML)
    python bench/collector.py --only relay    # relay throughput only
    python bench/collector.py --real --alias-gpus 8   # the NVML reads of 8 GPUs on this machine's
    python bench/collector.py --per-gpu       # the sampler's CPU per tick with 1..N real GPUs

Each measured collector runs in a child process (the real runtime, ``collector.runtime``),
shipping to a sink HTTP server in this process that accepts everything, so the numbers are
the collector's own. CPU is user+system time from /proc/<pid>/stat over the measured window
(after a warm-up), RSS is VmRSS/VmHWM from /proc/<pid>/status. Prints a table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_CPU_PCT, TARGET_RSS_MIB, TARGET_SPANS_S = 0.5, 80.0, 20_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the child: one collector, run until SIGTERM -----------------------------------------------


def widen_tape(tape: dict[str, Any], gpus: int) -> dict[str, Any]:
    """A recorded one-GPU tape as an ``gpus``-GPU tape (the same readings under new UUIDs)."""
    first = tape["ticks"][0]["calls"]
    uuid = first["nvmlDeviceGetHandleByIndex(0)"]["__handle__"]
    ticks = []
    for tick in tape["ticks"]:
        calls: dict[str, Any] = {}
        for key, value in tick["calls"].items():
            if key == "nvmlDeviceGetCount()":
                calls[key] = gpus
            elif key.startswith("nvmlDeviceGetHandleByIndex("):
                for i in range(gpus):
                    calls[f"nvmlDeviceGetHandleByIndex({i})"] = {"__handle__": f"{uuid}-{i}"}
            elif uuid in key or uuid in json.dumps(value):
                for i in range(gpus):
                    calls[key.replace(uuid, f"{uuid}-{i}")] = json.loads(
                        json.dumps(value).replace(uuid, f"{uuid}-{i}")
                    )
            else:
                calls[key] = value
        ticks.append({"t_ns": tick["t_ns"], "calls": calls})
    return {"meta": tape.get("meta", {}), "ticks": ticks}


def run_child(args: argparse.Namespace) -> int:
    from collector.config import CollectorConfig
    from collector.nvml import Nvml
    from collector.runtime import Collector

    # The relay child flushes every 0.5 s so that the last partial batch's wait does not
    # dominate the delivery rate of a short run; the sampler child keeps the defaults.
    config = CollectorConfig(
        server=args.server,
        otlp_port=0,
        metrics_port=0,
        spool_dir=args.spool_dir,
        interval=1.0,
        no_gpu=args.child == "relay",
        flush_interval=0.5 if args.child == "relay" else 5.0,
        host_name="bench",
        instance="bench-0",
        deployment="bench",
    )
    kwargs: dict[str, Any] = {}
    if args.child == "sampler" and args.alias_gpus:
        import pynvml

        kwargs = {"nvml": Nvml(lib=aliased_gpus(pynvml, args.alias_gpus))}
    elif args.child == "sampler" and args.tape:
        from tests.fixtures.nvml.nvml_tape import ReplayPynvml

        fake = ReplayPynvml(widen_tape(json.loads(Path(args.tape).read_text()), args.gpus), cycle=True)

        def clock() -> int:
            fake.advance()
            return time.time_ns()

        kwargs = {"nvml": Nvml(lib=fake), "gpu_clock": clock}
    collector = Collector(config, **kwargs)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    collector.start()
    print(
        json.dumps({"relay_port": collector.relay_port, "metrics_port": collector.metrics_port}), flush=True
    )
    stop.wait()
    collector.stop(grace_s=10)
    return 0


# --- the parent: sink, load, measurement -------------------------------------------------------


class Sink(ThreadingHTTPServer):
    """Accepts every OTLP POST with 200 and counts bytes."""

    daemon_threads = True

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(handler) -> None:  # noqa: N802, N805
                body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
                with self.lock:
                    self.requests += 1
                    self.bytes += len(body)
                handler.send_response(200)
                handler.send_header("Content-Type", "application/x-protobuf")
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            def log_message(handler, *args: Any) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def proc_mem_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class Child:
    def __init__(
        self,
        mode: str,
        sink: Sink,
        spool_dir: str,
        tape: str | None = None,
        gpus: int = 8,
        alias_gpus: int = 0,
    ) -> None:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            mode,
            "--server",
            sink.url,
            "--spool-dir",
            spool_dir,
            "--gpus",
            str(gpus),
        ]
        if tape:
            cmd += ["--tape", tape]
        if alias_gpus:
            cmd += ["--alias-gpus", str(alias_gpus)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.relay_port, self.metrics_port = ports["relay_port"], ports["metrics_port"]

    def metric(self, name: str, labels: str = "") -> float:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def measure_sampler(
    sink: Sink, seconds: float, tape: str | None, gpus: int, alias_gpus: int = 0
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as spool:
        child = Child("sampler", sink, spool, tape, gpus, alias_gpus)
        time.sleep(5)  # imports done, first ticks and first batches shipped
        cpu0, t0 = proc_cpu_s(child.proc.pid), time.monotonic()
        samples0 = child.metric("inferwatch_collector_received_items_total", 'kind="metrics",source="gpu"')
        time.sleep(seconds)
        cpu1, t1 = proc_cpu_s(child.proc.pid), time.monotonic()
        samples1 = child.metric("inferwatch_collector_received_items_total", 'kind="metrics",source="gpu"')
        gpus_seen = child.metric("inferwatch_collector_gpus")
        mem = proc_mem_mib(child.proc.pid)
        child.stop()
    return {
        "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
        "rss_mib": mem["VmRSS"],
        "hwm_mib": mem["VmHWM"],
        "gpus": gpus_seen,
        "samples_per_s": (samples1 - samples0) / (t1 - t0),
        "seconds": t1 - t0,
    }


def _names(lib: Any, wrap: Callable[[str, Any], Any]) -> dict[str, Any]:
    """Every public name of a pynvml-like module or object, callables passed through ``wrap``."""
    out = {}
    for name in dir(lib):
        if not name.startswith("_"):
            value = getattr(lib, name)
            out[name] = wrap(name, value) if callable(value) else value
    return out


def first_gpus(lib: Any, count: int, cpu_s: dict[str, float]) -> Any:
    """pynvml with only its first ``count`` GPUs visible (a copy of the module's names), each
    ``nvml*`` function adding the CPU time of its calls to ``cpu_s[name]``."""

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            started = time.process_time()
            try:
                return fn(*args)
            finally:
                cpu_s[name] = cpu_s.get(name, 0.0) + time.process_time() - started

        return call

    visible = types.SimpleNamespace(**_names(lib, lambda k, v: timed(k, v) if k.startswith("nvml") else v))
    visible.nvmlDeviceGetCount = lambda: min(count, lib.nvmlDeviceGetCount())
    return visible


class _Alias:
    """GPU ``index`` of an aliased pynvml: physical GPU ``index % count`` under its own UUID."""

    __slots__ = ("handle", "index")

    def __init__(self, handle: Any, index: int) -> None:
        self.handle, self.index = handle, index


def aliased_gpus(lib: Any, count: int) -> Any:
    """pynvml showing ``count`` GPUs made of this machine's ``n``: GPU ``i`` is physical GPU
    ``i % n`` under the UUID ``<uuid>-a<i>``. Every read is a real NVML call, so a 2-GPU
    machine does the NVML work of ``count`` GPUs (each physical GPU read ``count / n`` times
    a tick) and the collector's cost can be measured at ``count`` GPUs."""

    def unwrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            return fn(*(a.handle if isinstance(a, _Alias) else a for a in args))

        return call

    visible = types.SimpleNamespace(
        **_names(lib, lambda k, v: unwrap(v) if k.startswith(("nvmlDevice", "nvmlGpm")) else v)
    )
    visible.nvmlDeviceGetCount = lambda: count
    visible.nvmlDeviceGetHandleByIndex = lambda i: _Alias(
        lib.nvmlDeviceGetHandleByIndex(i % lib.nvmlDeviceGetCount()), i
    )
    visible.nvmlDeviceGetUUID = lambda h: f"{lib.nvmlDeviceGetUUID(h.handle)}-a{h.index}"
    visible.nvmlDeviceGetIndex = lambda h: h.index
    return visible


def measure_per_gpu(ticks: int, hz: float) -> list[dict[str, Any]]:
    """CPU time of the collector's sampler (`GpuSampler` over `Nvml`, the runtime's default
    intervals scaled to ``hz``) per tick with the first 1, 2, … N of this machine's GPUs:
    what each more GPU costs, NVML's own work included. In this process, one GPU count
    after another, ``ticks`` ticks each."""
    import pynvml

    from collector.config import CollectorConfig
    from collector.gpu import GpuSampler
    from collector.nvml import Nvml

    defaults = CollectorConfig(server="http://127.0.0.1:1")  # the runtime's default intervals

    pynvml.nvmlInit()
    try:
        total = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    out = []
    for count in range(1, total + 1):
        cpu_s: dict[str, float] = {}
        nvml = Nvml(lib=first_gpus(pynvml, count, cpu_s))
        if not nvml.start():
            raise RuntimeError("NVML did not start")
        sampler = GpuSampler.from_config(nvml, defaults)
        try:
            for _ in range(10):  # warm: handles, GPM buffers, the first process snapshot
                sampler.sample()
            cpu_s.clear()
            cpu0, wall0 = time.process_time(), time.monotonic()
            for _ in range(ticks):
                started = time.monotonic()
                samples = sampler.sample()
                time.sleep(max(0.0, 1 / hz - (time.monotonic() - started)))
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - wall0
        finally:
            sampler.close()
            nvml.shutdown()
        calls = {
            k: round(v / ticks / count * 1e6, 1) for k, v in sorted(cpu_s.items(), key=lambda kv: -kv[1])
        }
        out.append(
            {
                "gpus": count,
                "samples": len(samples),
                "cpu_us_per_tick": cpu / ticks * 1e6,
                "wall_s": wall,
                "nvml_cpu_us_per_gpu_tick": calls,
            }
        )
    return out


def span_request(spans: int) -> bytes:
    """An ExportTraceServiceRequest of ``spans`` vLLM-shaped spans, serialized."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    from collector.otlp import key_values, resource

    now = time.time_ns()
    out = []
    for i in range(spans):
        out.append(
            Span(
                trace_id=os.urandom(16),
                span_id=os.urandom(8),
                name="llm_request",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now - 2_000_000_000,
                end_time_unix_nano=now,
                attributes=key_values(
                    {
                        "gen_ai.request.id": f"cmpl-{i:08x}",
                        "gen_ai.response.model": "meta-llama/Llama-3.1-70B",
                        "gen_ai.usage.prompt_tokens": 1200,
                        "gen_ai.usage.completion_tokens": 300,
                        "gen_ai.request.max_tokens": 512,
                        "gen_ai.request.n": 1,
                        "gen_ai.request.temperature": 0.7,
                        "gen_ai.latency.time_in_queue": 0.01,
                        "gen_ai.latency.time_to_first_token": 0.2,
                        "gen_ai.latency.e2e": 2.0,
                        "gen_ai.latency.time_in_model_prefill": 0.19,
                        "gen_ai.latency.time_in_model_decode": 1.8,
                        "gen_ai.latency.time_in_model_inference": 1.99,
                        "gen_ai.response.finish_reasons": '["stop"]',
                    }
                ),
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=resource({"service.name": "vllm"}), scope_spans=[ScopeSpans(spans=out)])
        ]
    )
    return request.SerializeToString()


def measure_relay(sink: Sink, total_spans: int, per_request: int, senders: int) -> dict[str, Any]:
    body = span_request(per_request)
    requests_each = max(1, total_spans // per_request // senders)
    with tempfile.TemporaryDirectory() as spool:
        child = Child("relay", sink, spool)
        errors: list[str] = []

        def send() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", child.relay_port, timeout=30)
            for _ in range(requests_each):
                conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                reply = conn.getresponse()
                reply.read()
                if reply.status != 200:
                    errors.append(str(reply.status))
            conn.close()

        threads = [threading.Thread(target=send) for _ in range(senders)]
        cpu0, t0 = proc_cpu_s(child.proc.pid), time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_accepted = time.monotonic()
        sent = requests_each * senders * per_request
        deadline = time.monotonic() + 120

        def refused() -> float:  # answered 503 (or 413): the spool could not keep them
            return sum(
                child.metric("inferwatch_collector_relay_refused_items_total", f'kind="traces",reason="{r}"')
                for r in ("full", "too_large", "write_error")
            )

        while (
            child.metric("inferwatch_collector_delivered_items_total", 'kind="traces"') + refused() < sent
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        t_delivered = time.monotonic()
        cpu1 = proc_cpu_s(child.proc.pid)
        dropped = refused()
        delivered = child.metric("inferwatch_collector_delivered_items_total", 'kind="traces"')
        mem = proc_mem_mib(child.proc.pid)
        child.stop()
    return {
        "spans": sent,
        "per_request": per_request,
        "accepted_per_s": sent / (t_accepted - t0),
        "delivered_per_s": delivered / (t_delivered - t0),
        "delivered": delivered,
        "dropped": dropped,
        "errors": len(errors),
        "cpu_s": cpu1 - cpu0,
        "hwm_mib": mem["VmHWM"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window for sampling")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs to replay (fixture mode)")
    parser.add_argument("--tape", help="recorded NVML tape (default: tests/fixtures/nvml/load.json)")
    parser.add_argument("--real", action="store_true", help="sample this machine's GPUs through NVML")
    parser.add_argument(
        "--alias-gpus",
        type=int,
        default=0,
        metavar="N",
        help="with --real: N GPUs made of this machine's (each read N/n times a tick, real NVML calls)",
    )
    parser.add_argument("--spans", type=int, default=200_000, help="spans to relay")
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--only", choices=["sampler", "relay"])
    parser.add_argument(
        "--per-gpu", action="store_true", help="the sampler's CPU per tick with 1..N real GPUs (NVML)"
    )
    parser.add_argument("--ticks", type=int, default=200, help="ticks per GPU count (--per-gpu)")
    parser.add_argument("--hz", type=float, default=10.0, help="tick rate (--per-gpu)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    # child mode
    parser.add_argument("--child", choices=["sampler", "relay"], help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--spool-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    if args.per_gpu:
        counts = measure_per_gpu(args.ticks, args.hz)
        print(f"{'GPUs':>4}  {'CPU µs/tick':>11}  {'samples':>7}  (ticks {args.ticks} at {args.hz:g} Hz)")
        for c in counts:
            print(f"{c['gpus']:>4.0f}  {c['cpu_us_per_tick']:>11,.0f}  {c['samples']:>7.0f}")
        print("CPU µs per GPU per tick in each NVML function, at the most GPUs:")
        for name, us in counts[-1]["nvml_cpu_us_per_gpu_tick"].items():
            print(f"  {name:<40} {us:>8,.1f}")
        if len(counts) > 1:
            slope = (counts[-1]["cpu_us_per_tick"] - counts[0]["cpu_us_per_tick"]) / (len(counts) - 1)
            print(f"each more GPU: {slope:,.0f} µs of CPU a tick = {slope / 1e4:.3f} % of a core at 1 Hz")
        if args.json:
            args.json.write_text(json.dumps(counts, indent=1) + "\n")
        return 0

    sink = Sink()
    results: dict[str, Any] = {}
    rows = []
    if args.only in (None, "sampler"):
        tape = None if args.real else (args.tape or str(ROOT / "tests/fixtures/nvml/load.json"))
        s = results["sampler"] = measure_sampler(sink, args.seconds, tape, args.gpus, args.alias_gpus)
        source = _source(args) if args.real else f"{args.gpus} GPUs replayed from {Path(str(tape)).name}"
        rows += [
            (
                f"sampling CPU, % of one core ({source}, {s['gpus']:.0f} GPUs @ 1 Hz)",
                f"{s['cpu_pct']:.3f}",
                f"<= {TARGET_CPU_PCT}",
            ),
            (
                "sampling RSS, MiB (peak)",
                f"{s['rss_mib']:.1f} ({s['hwm_mib']:.1f})",
                f"<= {TARGET_RSS_MIB:.0f}",
            ),
            ("GPU samples per second", f"{s['samples_per_s']:.2f}", ""),
        ]
    if args.only in (None, "relay"):
        for per_request in (512, 64):
            r = results[f"relay_{per_request}"] = measure_relay(sink, args.spans, per_request, args.senders)
            rows += [
                (
                    f"relay accepted, spans/s ({per_request} spans/request, {args.senders} senders)",
                    f"{r['accepted_per_s']:,.0f}",
                    f">= {TARGET_SPANS_S:,}",
                ),
                (
                    f"relay delivered to sink, spans/s ({per_request}/request; {r['delivered']:.0f} of "
                    f"{r['spans']}, {r['dropped']:.0f} refused)",
                    f"{r['delivered_per_s']:,.0f}",
                    "",
                ),
                (f"relay peak RSS, MiB ({per_request}/request)", f"{r['hwm_mib']:.1f}", ""),
            ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'value':>16}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>16}  {target}")
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    save_summary(results, args)
    return 0


def _source(args: argparse.Namespace) -> str:
    return f"real NVML, {args.alias_gpus} aliased GPUs" if args.alias_gpus else "real NVML"


def save_summary(results: dict[str, Any], args: argparse.Namespace) -> None:
    """The lines `make bench` collates (bench/out/collector.json)."""
    from bench.common import Result, save

    out = []
    if "sampler" in results:
        s = results["sampler"]
        source = _source(args) if args.real else f"{args.gpus} GPUs replayed"
        out += [
            Result(
                "collector",
                f"sampling CPU at 1 Hz, {source}",
                s["cpu_pct"],
                "% of core",
                f"<= {TARGET_CPU_PCT}",
            ),
            Result("collector", f"sampling RSS, {source}", s["rss_mib"], "MiB", f"<= {TARGET_RSS_MIB:.0f}"),
        ]
    for key in ("relay_512", "relay_64"):
        if key in results:
            r = results[key]
            out += [
                Result(
                    "collector",
                    f"relay accepted, {r['per_request']} spans/request",
                    r["accepted_per_s"],
                    "spans/s",
                    f">= {TARGET_SPANS_S}",
                ),
                Result(
                    "collector",
                    f"relay delivered, {r['per_request']} spans/request",
                    r["delivered_per_s"],
                    "spans/s",
                    "",
                    f"{r['dropped']:.0f} refused",
                ),
            ]
    save("collector", out)


if __name__ == "__main__":
    raise SystemExit(main())
