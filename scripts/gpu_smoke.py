"""Smoke test on a real GPU: an inferwatch server and a collector on one machine, the GPU idle
and then under a matmul load, engine-shaped spans relayed through the collector.

    python scripts/gpu_smoke.py --idle 60 --load 60 --out /tmp/smoke

Needs an NVIDIA GPU, PyTorch, and the project's dependencies. Prints the GPU readings of each
phase as the server stored them, the spans it stored, the collector's own counters, and the
collector's CPU time and memory (from /proc). Writes the same as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "--server-root" in sys.argv:  # the server's code from elsewhere (a committed snapshot, say)
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--server-root") + 1]).resolve()))

from scripts.procs import free_port, wait_http  # noqa: E402 — after the path is set

LOAD = """
import sys, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn_like(a)
(a @ b); torch.cuda.synchronize()
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
"""

PHASE_SQL = """
SELECT gpu_uuid, any(gpu_name) AS name, count() AS samples,
       avg(util_gpu_pct) AS util_avg, max(util_gpu_pct) AS util_max,
       avg(sm_activity_pct) AS sm_active_avg, avg(tensor_active_pct) AS tensor_avg,
       avg(dram_bw_pct) AS dram_bw_avg, avg(power_mw) AS power_mw_avg, max(power_mw) AS power_mw_max,
       any(power_limit_mw) AS power_limit_mw, max(mem_used_bytes) AS mem_used_max,
       any(mem_total_bytes) AS mem_total, avg(temperature_c) AS temp_avg, avg(sm_clock_mhz) AS sm_clock_avg,
       min(energy_mj) AS energy_first, max(energy_mj) AS energy_last,
       countIf(energy_mj IS NOT NULL) AS energy_reads,
       min(time) AS first, max(time) AS last, groupUniqArrayArray(proc_pids) AS pids,
       max(arrayMax(arrayConcat([toUInt64(0)], proc_mem_bytes))) AS proc_mem_max
FROM gpu_samples
WHERE time >= fromUnixTimestamp64Milli({since:Int64}) AND time < fromUnixTimestamp64Milli({until:Int64})
GROUP BY gpu_uuid ORDER BY gpu_uuid
"""


def send_spans(relay_port: int, count: int, tag: str) -> None:
    """``count`` vLLM-shaped spans as the engine would export them, over OTLP/HTTP protobuf."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    from collector.otlp import key_values, resource

    now = time.time_ns()
    spans = [
        Span(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name="llm_request",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=now - 2_000_000_000,
            end_time_unix_nano=now,
            attributes=key_values(
                {
                    "gen_ai.request.id": f"{tag}-{i}",
                    "gen_ai.usage.prompt_tokens": 1000,
                    "gen_ai.usage.completion_tokens": 200,
                    "gen_ai.latency.e2e": 2.0,
                    "gen_ai.latency.time_to_first_token": 0.1,
                    "gen_ai.latency.time_in_queue": 0.01,
                }
            ),
        )
        for i in range(count)
    ]
    body = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=resource({"service.name": "vllm"}), scope_spans=[ScopeSpans(spans=spans)])
        ]
    ).SerializeToString()
    reply = httpx.post(
        f"http://127.0.0.1:{relay_port}/v1/traces",
        content=body,
        headers={"Content-Type": "application/x-protobuf"},
    )
    reply.raise_for_status()


def proc_usage(pid: int) -> dict[str, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    usage = {"cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            usage[key + "_mib"] = int(value.split()[0]) / 1024
    return usage


def collector_counters(metrics_port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("inferwatch_collector_") and not line.startswith("inferwatch_collector_gpu_sample")
    }


def phase_rows(data_dir: Path, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
    from api.settings import Settings
    from api.store import Query, open_store

    store = open_store(Settings(data_dir=data_dir))
    try:
        return store.rows(Query("smoke.phase", PHASE_SQL), since=since_ms, until=until_ms)
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=float, default=60.0, help="seconds with the GPU idle")
    parser.add_argument("--load", type=float, default=60.0, help="seconds under a bf16 matmul load")
    parser.add_argument("--spans", type=int, default=20, help="spans relayed in each phase")
    parser.add_argument("--out", type=Path, help="write the summary JSON here")
    parser.add_argument(
        "--server-root",
        type=Path,
        default=ROOT,
        help="directory holding the server's api/ package (default: this checkout)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="inferwatch-smoke-"))
    server_port, relay_port, metrics_port = free_port(), free_port(), free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--port",
            str(server_port),
            "--data-dir",
            str(work / "data"),
            "--log-level",
            "WARNING",
        ],
        cwd=args.server_root,
        env=env,
    )
    collector = None
    summary: dict[str, Any] = {}
    try:
        wait_http(f"{server_url}/healthz", "the inferwatch server", 180, server)
        collector = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collector",
                "--server",
                server_url,
                "--cluster",
                "device",
                "--deployment",
                "gpu-smoke",
                "--otlp-port",
                str(relay_port),
                "--metrics-port",
                str(metrics_port),
                "--spool-dir",
                str(work / "spool"),
                "--engine-pid",
                str(os.getpid()),
                "--interval",
                "1s",
                "--flush-interval",
                "1s",
            ],
            cwd=ROOT,
            env=env,
        )
        wait_http(f"http://127.0.0.1:{metrics_port}/metrics", "the collector", 60, collector)
        usage0 = proc_usage(collector.pid)
        t0 = time.time()

        send_spans(relay_port, args.spans, "idle")
        time.sleep(args.idle)
        t_idle_end = time.time()

        load = subprocess.Popen(
            [sys.executable, "-c", LOAD, str(args.load)], stdout=subprocess.PIPE, text=True
        )
        assert load.stdout is not None
        if load.stdout.readline().strip() != "ready":
            raise RuntimeError("the matmul load did not start")
        t_load = time.time()
        send_spans(relay_port, args.spans, "load")
        load.wait()
        t_load_end = time.time()
        time.sleep(3)  # the last ticks reach the spool

        usage1 = proc_usage(collector.pid)
        counters = collector_counters(metrics_port)
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=60)
        wall = t_load_end + 3 - t0
        summary["collector"] = {
            "cpu_pct_of_one_core": 100 * (usage1["cpu_s"] - usage0["cpu_s"]) / wall,
            "wall_s": wall,
            "rss_mib": usage1.get("VmRSS_mib"),
            "peak_rss_mib": usage1.get("VmHWM_mib"),
            "exit_code": collector.returncode,
            "counters": counters,
        }
        requests = httpx.get(
            f"{server_url}/api/v1/requests",
            params={"deployment": "gpu-smoke", "since": "2000-01-01T00:00:00Z", "limit": 1000},
        ).json()
        summary["requests"] = {
            "rows": len(requests["items"]),
            "gpu_uuids": sorted({u for r in requests["items"] for u in r["gpu_uuids"]}),
            "hosts": sorted({r["host"] for r in requests["items"]}),
        }
    finally:
        if collector is not None and collector.poll() is None:
            collector.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    phases = {"idle": (t0 + 2, t_idle_end), "load": (t_load + 2, t_load_end)}
    summary["phases"] = {
        name: phase_rows(work / "data", int(a * 1000), int(b * 1000)) for name, (a, b) in phases.items()
    }
    summary["load_pid"] = load.pid

    print(
        f"collector: {summary['collector']['cpu_pct_of_one_core']:.3f} % of one core over "
        f"{summary['collector']['wall_s']:.0f} s, RSS {summary['collector']['rss_mib']:.1f} MiB "
        f"(peak {summary['collector']['peak_rss_mib']:.1f}), exit {summary['collector']['exit_code']}"
    )
    print(f"requests stored: {summary['requests']}")
    for name, rows in summary["phases"].items():
        for row in rows:
            energy_w = None
            if row["energy_reads"] >= 2 and row["last"] > row["first"]:
                seconds = (row["last"] - row["first"]).total_seconds()
                energy_w = (row["energy_last"] - row["energy_first"]) / 1000 / seconds
            print(
                f"[{name}] {row['gpu_uuid']} {row['name']}: {row['samples']} samples; util avg "
                f"{row['util_avg']:.1f}% max {row['util_max']}; SM active {row['sm_active_avg'] or 0:.1f}%; "
                f"tensor {row['tensor_avg'] or 0:.1f}%; DRAM BW {row['dram_bw_avg'] or 0:.1f}%; power "
                f"{(row['power_mw_avg'] or 0) / 1000:.0f} W (max {(row['power_mw_max'] or 0) / 1000:.0f}, "
                f"limit {(row['power_limit_mw'] or 0) / 1000:.0f}); energy-counter power "
                f"{'n/a' if energy_w is None else f'{energy_w:.0f} W'} ({row['energy_reads']} reads); mem "
                f"{(row['mem_used_max'] or 0) / 2**30:.1f} of {(row['mem_total'] or 0) / 2**30:.1f} GiB; "
                f"{row['temp_avg'] or 0:.0f} C; SM clock {row['sm_clock_avg'] or 0:.0f} MHz; "
                f"pids {row['pids']}"
            )
    for key in ("delivered_items_total", "queue_dropped_items_total", "spool_dropped_items_total"):
        for name, value in summary["collector"]["counters"].items():
            if key in name:
                print(f"  {name} = {value:g}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "smoke.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    ok = summary["requests"]["rows"] == 2 * args.spans and all(summary["phases"].values())
    print("SMOKE OK" if ok else "SMOKE INCOMPLETE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
