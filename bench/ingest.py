"""OTLP ingest speed, one core: spans (vLLM-shaped protobuf, ~15 attributes each) and GPU
samples (the collector's own wire format), each at 1×, 4× and 16× the data.

Spans: decode + normalise + store through the /v1/traces handler's code (`Ingestor`), and
its parts (decode + normalise only; the store only, Arrow → chDB); a straightforward
baseline (protobuf → MessageToDict → one INSERT per span); ClickHouse's own best case
(`INSERT … SELECT` from `numbers()`, one statement, same views attached); and end to end
through the HTTP endpoint (gzip, server in another process).

GPU samples: the store only (columnar Arrow batches into `gpu_samples`, views attached),
ClickHouse's best case, OTLP metrics decoded + normalised + stored through the handler's
code, the same decoded + normalised only (to the Arrow batch and its token), and end to end
over HTTP. `--only gpu` (or `spans`) runs one signal's cases.

Each case runs on fresh data (new ids), so the store's deduplication never skips work.
The JSON output carries a short profile summary (where the time goes) as two more rows.

Run: python -m bench.ingest [--spans N] [--gpu-requests N] [--repeats R] [--only spans|gpu]
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.common import Result, machine, pin_one_core, print_table, save

Clock = tuple[float, float]
"""(wall seconds, CPU seconds of this process, all its threads)."""

BATCH = 5_000
"""Spans per OTLP request (a collector's large batch)."""
GPUS_PER_HOST = 8
TICKS_PER_REQUEST = 60
"""GPU requests carry a minute of one 8-GPU host at 1 Hz: 480 rows, ~6,400 data points."""
SUSTAINED = 64
SUSTAINED_HOSTS = 64
"""The sustained GPU case: 256 requests, 122,880 rows, from 64 hosts taking turns."""
SMALL_TICKS = 5
SMALL_HOSTS = 16
"""The collector's default: each of 16 hosts sends every 5 s (`--flush-interval`), 40 rows."""
SCALES = (1, 4, 16)
LARGE_BATCH = 20_000
GPU_PATH = "/v1/metrics"
GPU_TABLE = "gpu_samples"
"""Spans per request in the large-request case: a collector under load with
`--batch-max-bytes 16MiB` (14 MB of these spans, under the server's 16 MiB body limit)."""
NS = 1_000_000_000


def timed(fn: Callable[[], object]) -> Clock:
    """Wall and CPU time of `fn`. On a shared machine the wall time includes waiting for the
    core; the CPU time does not, so rates are given both ways."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def medians(fn: Callable[[], Clock], repeats: int) -> Clock:
    runs = [fn() for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


# --- data ----------------------------------------------------------------------------------


def _kv(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, str):
        kv.value.string_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.double_value = float(value)  # type: ignore[arg-type]
    return kv


def make_batches(total: int, *, seed: int = 7, batch: int = BATCH) -> list[bytes]:
    """Serialized ExportTraceServiceRequests of `batch` vLLM `llm_request` spans each."""
    rng = random.Random(seed)
    t0 = time.time_ns() - 3 * 86400 * NS
    batches = []
    made = 0
    while made < total:
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(
            [
                _kv("host.name", f"gpu-node-{made // batch % 16}"),
                _kv("inferwatch.cluster", "prod"),
                _kv("inferwatch.deployment", "chat-70b"),
                _kv("service.name", "vllm"),
            ]
        )
        rs.resource.attributes.add(
            key="inferwatch.gpu.uuids"
        ).value.array_value.values.add().string_value = "GPU-1"
        spans = rs.scope_spans.add().spans
        for i in range(min(batch, total - made)):
            prompt = rng.randint(50, 4000)
            output = rng.randint(10, 800)
            queue = rng.random() * 0.2
            prefill = prompt * 0.00008
            decode = output * 0.02
            e2e = queue + prefill + decode
            start = t0 + (made + i) * 50_000_000
            s = spans.add(
                trace_id=rng.randbytes(16),
                span_id=rng.randbytes(8),
                name="llm_request",
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=start + int(e2e * NS),
            )
            s.attributes.extend(
                [
                    _kv("gen_ai.response.model", "meta-llama/Llama-3.1-70B-Instruct"),
                    _kv("gen_ai.request.id", f"cmpl-{rng.getrandbits(64):016x}"),
                    _kv("gen_ai.request.max_tokens", 1024),
                    _kv("gen_ai.request.temperature", 0.7),
                    _kv("gen_ai.request.top_p", 0.95),
                    _kv("gen_ai.request.n", 1),
                    _kv("gen_ai.usage.prompt_tokens", prompt),
                    _kv("gen_ai.usage.completion_tokens", output),
                    _kv("gen_ai.latency.time_in_queue", queue),
                    _kv("gen_ai.latency.time_to_first_token", queue + prefill),
                    _kv("gen_ai.latency.e2e", e2e),
                    _kv("gen_ai.latency.time_in_model_prefill", prefill),
                    _kv("gen_ai.latency.time_in_model_decode", decode),
                    _kv("gen_ai.latency.time_in_model_inference", prefill + decode),
                    _kv("gen_ai.response.finish_reasons", '["stop"]'),
                ]
            )
        made += len(spans)
        batches.append(request.SerializeToString())
    return batches


def make_gpu_requests(
    count: int, *, seed: int = 7, ticks: int = TICKS_PER_REQUEST, hosts: int | None = None
) -> list[bytes]:
    """`count` OTLP metrics requests as the collector encodes them (`collector.otlp`), each
    `ticks` seconds of one 8-GPU host (a minute by default): every NVML and GPM field, the
    energy counter and one process every 5th tick. Hosts are numbered from the seed so each
    call makes new rows; each request is a host of its own, or with `hosts`, that many hosts
    send in turn, each request the next window of its host (as a fleet of collectors does)."""
    from collector.otlp import gpu_metrics_request
    from collector.samples import GpuSample, ProcessUsage

    rng = random.Random(seed)
    t0 = (time.time_ns() // NS - 2 * 86400) * NS
    bodies = []
    for r in range(count):
        node, window = (r, 0) if hosts is None else (r % hosts, r // hosts)
        host = f"node-{seed % 100_000:05d}-{node:04d}"
        samples = []
        for tick in range(window * ticks, (window + 1) * ticks):
            for g in range(GPUS_PER_HOST):
                load = rng.random()
                samples.append(
                    GpuSample(
                        time_ns=t0 + tick * NS,
                        index=g,
                        uuid=f"GPU-{seed % 65536:04x}{node:04x}-{g:04x}-4a5b-8c9d-0123456789ab",
                        name="NVIDIA H100 80GB HBM3",
                        util_gpu_pct=int(load * 100),
                        util_mem_pct=int(load * 45),
                        mem_used_bytes=71 * 2**30 + rng.randrange(4) * 2**21,
                        mem_total_bytes=80 * 2**30,
                        power_mw=70_000 + int(load * 550_000),
                        power_limit_mw=700_000,
                        energy_mj=10**9 + tick * 400_000 if tick % 5 == 0 else None,
                        sm_clock_mhz=1980,
                        temperature_c=35 + int(load * 40),
                        sm_activity_pct=load * 80,
                        sm_occupancy_pct=load * 32,
                        dram_bw_pct=load * 60,
                        tensor_active_pct=load * 48,
                        processes=(
                            ProcessUsage(
                                pid=4242,
                                mem_used_bytes=69 * 2**30,
                                sm_util_pct=int(load * 80) if tick % 5 == 0 else None,
                            ),
                        ),
                    )
                )
        bodies.append(gpu_metrics_request(samples, {"host.name": host, "inferwatch.cluster": "prod"}))
    return bodies


def gpu_tables(rows: int, *, seed: int) -> list[Any]:
    """Arrow batches for `gpu_samples` of 38,400 rows each (64 GPUs × 10 minutes)."""
    import numpy as np

    from bench.storage import table_for

    rng = np.random.default_rng(seed)
    t0 = int(time.time()) - 2 * 86400 + seed % 3600
    tables = []
    made = 0
    while made < rows:
        table = table_for(rng, 64, 600, t0 + len(tables) * 600)
        tables.append(table)
        made += table.num_rows
    return tables


def grouped(tables: list[Any], size: int) -> list[Any]:
    """Every `size` tables as one, as the write-ahead log gathers requests into one insert."""
    import pyarrow as pa

    return [pa.concat_tables(tables[i : i + size]) for i in range(0, len(tables), size)]


# --- the cases -------------------------------------------------------------------------------


def open_bench_store(path: Path, database: str):  # type: ignore[no-untyped-def]
    from api.settings import Settings
    from api.store.gateway import Store
    from api.store.migrate import migrate
    from api.store.transports import ChdbTransport

    settings = Settings(data_dir=path, clickhouse_database=database)
    store = Store(ChdbTransport(path / "clickhouse", database, query_timeout_s=600))
    migrate(store, settings)
    return store, settings


def ingestor(store, settings):  # type: ignore[no-untyped-def]
    """The ingest service inserting each request while it waits (INGEST_FLUSH_S=0)."""
    from api.ingest.service import Ingestor
    from api.ingest.writer import DirectWriter
    from api.telemetry import ServerMetrics

    metrics = ServerMetrics()
    return Ingestor(settings, DirectWriter(store, metrics), metrics)


def logged_ingestor(store, settings):  # type: ignore[no-untyped-def]
    """The ingest service as the server runs it by default: through the write-ahead log,
    under the store's data directory. Returns it and its writer (started; stop it)."""
    from api.ingest.service import Ingestor
    from api.ingest.writer import open_writer
    from api.telemetry import ServerMetrics

    metrics = ServerMetrics()
    writer = open_writer(settings.model_copy(update={"ingest_flush_s": 1.0}), store, metrics)
    writer.start()
    return Ingestor(settings, writer, metrics), writer


def ours_logged(ingest, writer, bodies: list[bytes], path: str) -> Clock:  # type: ignore[no-untyped-def]
    """Every request answered from the log, then until the last row is in the store: the CPU
    of the flusher thread and of ClickHouse's threads is in the process's CPU time."""
    from api.ingest.body import Encoding

    handler = ingest.traces if path == "/v1/traces" else ingest.metrics

    def run() -> None:
        for body in bodies:
            handler(body, Encoding.PROTOBUF, None)
        if not writer.flush(timeout_s=600):
            raise RuntimeError("the write-ahead log did not drain")

    return timed(run)


def ours(ingest, batches: list[bytes]) -> Clock:  # type: ignore[no-untyped-def]
    """Decode + normalise + store, the /v1/traces handler's code."""
    from api.ingest.body import Encoding

    def run() -> None:
        for body in batches:
            ingest.traces(body, Encoding.PROTOBUF, None)

    return timed(run)


def ours_gpu(ingest, bodies: list[bytes]) -> Clock:  # type: ignore[no-untyped-def]
    from api.ingest.body import Encoding

    def run() -> None:
        for body in bodies:
            ingest.metrics(body, Encoding.PROTOBUF, None)

    return timed(run)


def decode_only(batches: list[bytes], *, compiled: bool = True) -> Clock:
    """The handler's `read_traces`, to the Arrow batch and its token. `compiled=False`: the
    pure-Python path (upb parse, then Python), what an install without a C compiler runs."""
    from api.ingest.service import dedup_token
    from api.ingest.traces import normalise_traces

    def run() -> None:
        now = time.time_ns()
        for body in batches:
            if compiled:
                batch = read(body, now)
            else:
                request = ExportTraceServiceRequest.FromString(body)
                batch = normalise_traces(request, max_attribute_bytes=8192, now_ns=now)
            batch.to_arrow()
            dedup_token("requests", batch.keys())

    return timed(run)


def read(body: bytes, now_ns: int):  # type: ignore[no-untyped-def]
    """`read_traces` as the server calls it on a protobuf body."""
    from api.ingest.body import Encoding
    from api.ingest.traces import read_traces

    return read_traces(
        body, Encoding.PROTOBUF, max_items=200_000, max_attribute_bytes=8192, now_ns=now_ns, oldest_ns=0
    )


def decode_only_gpu(bodies: list[bytes], *, compiled: bool = True) -> Clock:
    """The handler's `read_metrics`, to the Arrow batch and its token. `compiled=False`: the
    pure-Python path (upb parse, then numpy), what an install without a C compiler runs."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from api.ingest.metrics import normalise_metrics

    def run() -> None:
        now = time.time_ns()
        for body in bodies:
            if compiled:
                batch = read_gpu(body, now)
            else:
                request = ExportMetricsServiceRequest.FromString(body)
                batch = normalise_metrics(request, max_attribute_bytes=8192, now_ns=now)
            batch.gpu_table()
            batch.gpu_token()

    return timed(run)


def read_gpu(body: bytes, now_ns: int):  # type: ignore[no-untyped-def]
    """`read_metrics` as the server calls it on a protobuf body."""
    from api.ingest.body import Encoding
    from api.ingest.metrics import read_metrics

    return read_metrics(
        body, Encoding.PROTOBUF, max_items=200_000, max_attribute_bytes=8192, now_ns=now_ns, oldest_ns=0
    )


def store_only(store, tables: list[tuple[Any, str]], table: str) -> Clock:  # type: ignore[no-untyped-def]
    """Arrow batches (already normalised) into `table` with their dedup tokens."""
    return timed(lambda: [store.insert(table, t, dedup_token=token) for t, token in tables])


def normalised(batches: list[bytes]) -> list[tuple[Any, str]]:
    from api.ingest.service import dedup_token

    out = []
    for body in batches:
        batch = read(body, time.time_ns())
        out.append((batch.to_arrow(), dedup_token("requests", batch.keys())))
    return out


def baseline(store, batches: list[bytes], limit: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """The straightforward way: MessageToDict, then one INSERT per span. `limit` spans."""
    from api.store.gateway import Query

    insert = Query(
        "bench.baseline_insert",
        "INSERT INTO requests (time, end_time, trace_id, span_id, request_id, deployment, model, framework, "
        "prompt_tokens, output_tokens, queue_s, ttft_s, prefill_s, decode_s, e2e_s) VALUES "
        "({t:DateTime64(6)}, {e:DateTime64(6)}, {trace:String}, {span:String}, {rid:String}, {dep:String}, "
        "{model:String}, 'vllm', {p:UInt32}, {o:UInt32}, {q:Float64}, {ttft:Float64}, {pre:Float64}, "
        "{dec:Float64}, {e2e:Float64})",
    )
    done = 0
    started = time.perf_counter()
    for body in batches:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        doc = MessageToDict(request)
        for rs in doc["resourceSpans"]:
            dep = next(
                a["value"]["stringValue"]
                for a in rs["resource"]["attributes"]
                if a["key"] == "inferwatch.deployment"
            )
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    attrs = {}
                    for a in s["attributes"]:
                        v = a["value"]
                        attrs[a["key"]] = v.get("stringValue", v.get("intValue", v.get("doubleValue")))
                    start = int(s["startTimeUnixNano"])
                    e2e = float(attrs["gen_ai.latency.e2e"])
                    store.execute(
                        insert,
                        t=datetime.fromtimestamp(start / 1e9, UTC),
                        e=datetime.fromtimestamp(start / 1e9 + e2e, UTC),
                        trace=s["traceId"],
                        span=s["spanId"],
                        rid=attrs["gen_ai.request.id"],
                        dep=dep,
                        model=attrs["gen_ai.response.model"],
                        p=int(attrs["gen_ai.usage.prompt_tokens"]),
                        o=int(attrs["gen_ai.usage.completion_tokens"]),
                        q=float(attrs["gen_ai.latency.time_in_queue"]),
                        ttft=float(attrs["gen_ai.latency.time_to_first_token"]),
                        pre=float(attrs["gen_ai.latency.time_in_model_prefill"]),
                        dec=float(attrs["gen_ai.latency.time_in_model_decode"]),
                        e2e=e2e,
                    )
                    done += 1
                    if done >= limit:
                        return time.perf_counter() - started, done
    return time.perf_counter() - started, done


def ceiling(store, n: int) -> Clock:  # type: ignore[no-untyped-def]
    """ClickHouse inserting n generated request rows in one statement, the same views
    attached and the same insert settings as the store's: the insert ceiling."""
    from api.store.gateway import Query

    q = Query(
        "bench.ceiling",
        "INSERT INTO requests (time, end_time, trace_id, span_id, request_id, cluster, host, deployment, "
        "model, framework, prompt_tokens, output_tokens, queue_s, ttft_s, prefill_s, decode_s, e2e_s, "
        "finish_reason, gpu_uuids) SETTINGS optimize_on_insert = 0 "
        "SELECT now64(6) - number / 20, now64(6) - number / 20 + 3, hex(cityHash64(number, {s:UInt64})), "
        "hex(cityHash64(number, 1)), toString(number), 'prod', 'gpu-node-1', 'chat-70b', 'llama', 'vllm', "
        "50 + number % 4000, 10 + number % 800, 0.1, 0.3, 0.2, 2.5, 3.0, 'stop', ['GPU-1'] "
        "FROM numbers({n:UInt64})",
    )
    return timed(lambda: store.execute(q, n=n, s=random.randrange(2**63)))


def ceiling_gpu(store, n: int) -> Clock:  # type: ignore[no-untyped-def]
    from api.store.gateway import Query

    q = Query(
        "bench.ceiling_gpu",
        "INSERT INTO gpu_samples (time, cluster, host, gpu_uuid, gpu_index, gpu_name, deployment, "
        "util_gpu_pct, util_mem_pct, mem_used_bytes, mem_total_bytes, power_mw, power_limit_mw, energy_mj, "
        "sm_clock_mhz, temperature_c, sm_activity_pct, sm_occupancy_pct, dram_bw_pct, tensor_active_pct, "
        "proc_pids, proc_mem_bytes, proc_sm_pct) SETTINGS optimize_on_insert = 0 "
        "SELECT toDateTime64(now() - 86400 - intDiv(number, 64), 3), 'prod', "
        "concat('c-', toString({s:UInt32}), '-', toString(intDiv(number % 64, 8))), "
        "concat('GPU-', toString({s:UInt32}), '-', toString(number % 64)), number % 8, "
        "'NVIDIA H100 80GB HBM3', 'chat', number % 100, number % 45, 71 * 1073741824, 80 * 1073741824, "
        "70000 + number % 550000, 700000, "
        "if(number % 5 = 0, 1000000000 + number, NULL), 1980, 60, number % 80, number % 32, number % 60, "
        "number % 48, [4242], [69 * 1073741824], [number % 80] FROM numbers({n:UInt64})",
    )
    return timed(lambda: store.execute(q, n=n, s=random.randrange(2**31)))


# --- end to end ------------------------------------------------------------------------------


class Server:
    """`inferwatch serve` in another process, posted to with gzip as a collector does."""

    def __init__(self, data_dir: Path) -> None:
        self.port = 18000 + os.getpid() % 1000
        env = {
            **os.environ,
            "INFERWATCH_DATA_DIR": str(data_dir),
            "INFERWATCH_PORT": str(self.port),
            "INFERWATCH_LOG_LEVEL": "WARNING",
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                self.close()
                raise RuntimeError("server did not start: " + err)
            time.sleep(0.2)
        self.client = httpx.Client(timeout=300)

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (all its threads), from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post(self, path: str, bodies: list[bytes]) -> Clock:
        """Wall time, and the CPU time of server and client together."""
        compressed = [gzip.compress(b, 1) for b in bodies]
        started, client_cpu, server_cpu = time.perf_counter(), time.process_time(), self.cpu_s()
        for body in compressed:
            reply = self.client.post(
                self.url + path,
                content=body,
                headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            )
            reply.raise_for_status()
        self.drained()
        cpu = time.process_time() - client_cpu + self.cpu_s() - server_cpu
        return time.perf_counter() - started, cpu

    def drained(self) -> None:
        """Until the server's write-ahead log holds nothing: every row posted is stored."""
        deadline = time.monotonic() + 600
        while "\ninferwatch_wal_waiting_bytes 0.0\n" not in self.client.get(self.url + "/metrics").text:
            if time.monotonic() > deadline:
                raise RuntimeError("the server's write-ahead log did not drain in 600 s")
            time.sleep(0.05)

    def close(self) -> None:
        if hasattr(self, "client"):
            self.client.close()
        self.process.terminate()
        self.process.wait(timeout=30)


# --- where the time goes ---------------------------------------------------------------------


def _split(writer, bodies: list[bytes], parse, normalise, rows, table: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds in each step of the default path, timed step by step (no profiler overhead):
    `parse(body)`, `normalise(request, body)`, `rows(batch)` → (Arrow table, dedup token),
    the write-ahead log's write into `table`, and at the end its inserts into the store."""
    split = dict.fromkeys(("parse", "normalise", "arrow", "log", "store"), 0.0)
    for body in bodies:
        t0 = time.perf_counter()
        request = parse(body)
        t1 = time.perf_counter()
        batch = normalise(request, body)
        t2 = time.perf_counter()
        arrow, token = rows(batch)
        t3 = time.perf_counter()
        writer.write(table, arrow, token)
        t4 = time.perf_counter()
        for key, dt in zip(
            ("parse", "normalise", "arrow", "log"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True
        ):
            split[key] += dt
    t0 = time.perf_counter()
    writer.flush(timeout_s=600)
    split["store"] = time.perf_counter() - t0
    return split


def span_split(writer, batches: list[bytes]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """`parse` is nothing here: the compiled decoder reads protobuf bodies itself."""
    from api.ingest.service import dedup_token

    return _split(
        writer,
        batches,
        lambda body: body,
        lambda _request, body: read(body, time.time_ns()),
        lambda batch: (batch.to_arrow(), dedup_token("requests", batch.keys())),
        "requests",
    )


def gpu_split(writer, bodies: list[bytes]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """`parse` is nothing here too: the compiled reader reads protobuf bodies itself."""
    return _split(
        writer,
        bodies,
        lambda body: body,
        lambda _request, body: read_gpu(body, time.time_ns()),
        lambda batch: (batch.gpu_table(), batch.gpu_token()),
        "gpu_samples",
    )


_GROUPS = (
    ("attribute decoding", ("spans.py:", "WhichOneof", "getattr", "decode_traces", "gpu_points.py:")),
    ("compiled GPU reader", ("scan_metrics", "join_points", "gpu_wire.py:")),
    ("conventions", ("conventions",)),
    ("rows and checks", ("traces.py:", "metrics.py:")),
    ("Arrow", ("pyarrow", "from_pydict", "from_arrays", "pa.array")),
    ("chDB insert", ("query", "chdb")),
)


def top_functions(fn: Callable[[], object]) -> str:
    """Own time grouped by what the function is part of, then the top three functions."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (path, line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tottime, f"{Path(path).name}:{line}({name})" if line else name))
    total = sum(t for t, _ in rows) or 1.0
    groups = dict.fromkeys([g for g, _ in _GROUPS] + ["other"], 0.0)
    for t, label in rows:
        group = next((g for g, marks in _GROUPS if any(m in label for m in marks)), "other")
        groups[group] += t
    parts = [f"{g} {t / total:.0%}" for g, t in groups.items() if t / total >= 0.01]
    top = sorted(rows, reverse=True)[:3]
    return "; ".join(parts) + " | top: " + ", ".join(f"{label} {t / total:.0%}" for t, label in top)


def _shares(split: dict[str, float]) -> str:
    total = sum(split.values()) or 1.0
    return ", ".join(f"{k} {v / total:.0%}" for k, v in split.items())


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=10_000, help="spans at 1× (16× is 16 times this)")
    parser.add_argument("--gpu-requests", type=int, default=4, help="GPU requests (480 rows each) at 1×")
    parser.add_argument(
        "--gpu-rows", type=int, default=38_400, help="rows of Arrow batches at 1× (store only)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-spans", type=int, default=200)
    parser.add_argument("--no-http", action="store_true", help="skip the end-to-end HTTP cases")
    parser.add_argument("--only", choices=("spans", "gpu"), help="run the span or the GPU cases only")
    args = parser.parse_args(argv)
    spans, gpus = args.only != "gpu", args.only != "spans"
    pinned = pin_one_core()
    print(f"machine: {machine()}; {pinned}", flush=True)
    seeds = iter(range(1000, 10**6))
    rates: dict[str, dict[int, float]] = {}
    cpu_rates: dict[str, dict[int, float]] = {}

    def record(case: str, scale: int, items: int, clock: Clock) -> None:
        wall, cpu = clock
        rates.setdefault(case, {})[scale] = items / wall
        cpu_rates.setdefault(case, {})[scale] = items / cpu if cpu > 0 else 0.0
        print(f"  {case} at {scale}×: {items / wall:,.0f}/s, {cpu_rates[case][scale]:,.0f}/CPU-s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        store, settings = open_bench_store(Path(tmp), "bench_ingest")
        ingest = ingestor(store, settings)
        logged, writer = logged_ingestor(store, settings)
        if spans:
            ours(ingest, make_batches(2 * BATCH, seed=next(seeds)))  # warm up every table and view
        if gpus:
            ours_gpu(ingest, make_gpu_requests(2, seed=next(seeds)))
            store_only(store, [(t, None) for t in gpu_tables(1, seed=next(seeds))], "gpu_samples")
        for scale in SCALES:
            n = args.spans * scale
            if spans:
                t = medians(
                    lambda n=n: ours_logged(logged, writer, make_batches(n, seed=next(seeds)), "/v1/traces"),
                    args.repeats,
                )
                record("spans: decode + normalise + store (ours)", scale, n, t)
                t = medians(lambda n=n: ours(ingest, make_batches(n, seed=next(seeds))), args.repeats)
                record("spans: decode + normalise + store, one insert per request (FLUSH_S=0)", scale, n, t)
                if scale > 1:  # 1× is less than one large request
                    t = medians(
                        lambda n=n: ours(ingest, make_batches(n, seed=next(seeds), batch=LARGE_BATCH)),
                        args.repeats,
                    )
                    record(
                        f"spans: decode + normalise + store, {LARGE_BATCH:,}-span requests (FLUSH_S=0)",
                        scale,
                        n,
                        t,
                    )
                batches = make_batches(n, seed=next(seeds))
                t = medians(lambda batches=batches: decode_only(batches), args.repeats)
                record("spans: decode + normalise only", scale, n, t)
                t = medians(lambda batches=batches: decode_only(batches, compiled=False), args.repeats)
                record("spans: decode + normalise only, pure-Python path (baseline)", scale, n, t)
                t = medians(
                    lambda n=n: store_only(store, normalised(make_batches(n, seed=next(seeds))), "requests"),
                    args.repeats,
                )
                record(f"spans: store only ({BATCH:,}-row Arrow inserts)", scale, n, t)
                t = medians(lambda n=n: ceiling(store, n), args.repeats)
                record("spans: ceiling, INSERT … SELECT numbers() (one statement)", scale, n, t)
            if not gpus:
                continue
            g = args.gpu_requests * scale
            rows = g * GPUS_PER_HOST * TICKS_PER_REQUEST
            t = medians(
                lambda g=g: ours_logged(logged, writer, make_gpu_requests(g, seed=next(seeds)), GPU_PATH),
                args.repeats,
            )
            record("GPU samples: OTLP decode + normalise + store (ours)", scale, rows, t)
            small = g * TICKS_PER_REQUEST // SMALL_TICKS  # the same rows in the collector's 5-s requests
            t = medians(
                lambda small=small: ours_logged(
                    logged,
                    writer,
                    make_gpu_requests(small, seed=next(seeds), ticks=SMALL_TICKS, hosts=SMALL_HOSTS),
                    GPU_PATH,
                ),
                args.repeats,
            )
            rows_each = SMALL_TICKS * GPUS_PER_HOST
            label = f"GPU samples: OTLP decode + normalise + store (ours), {rows_each}-row requests"
            record(label, scale, rows, t)
            t = medians(lambda g=g: ours_gpu(ingest, make_gpu_requests(g, seed=next(seeds))), args.repeats)
            record(
                "GPU samples: OTLP decode + normalise + store, one insert per request (FLUSH_S=0)",
                scale,
                rows,
                t,
            )
            bodies = make_gpu_requests(g, seed=next(seeds))
            t = medians(lambda bodies=bodies: decode_only_gpu(bodies), args.repeats)
            record("GPU samples: OTLP decode + normalise only", scale, rows, t)
            t = medians(lambda bodies=bodies: decode_only_gpu(bodies, compiled=False), args.repeats)
            record("GPU samples: OTLP decode + normalise only, pure-Python path", scale, rows, t)
            arrow_rows = args.gpu_rows * scale
            t = medians(
                lambda r=arrow_rows: store_only(
                    store, [(tb, None) for tb in gpu_tables(r, seed=next(seeds))], "gpu_samples"
                ),
                args.repeats,
            )
            record("GPU samples: store only (38,400-row Arrow inserts)", scale, arrow_rows, t)
            if scale > 1:  # 1× is one 38,400-row batch
                t = medians(
                    lambda r=arrow_rows: store_only(
                        store, [(tb, None) for tb in grouped(gpu_tables(r, seed=next(seeds)), 4)], GPU_TABLE
                    ),
                    args.repeats,
                )
                record("GPU samples: store only (153,600-row Arrow inserts)", scale, arrow_rows, t)
            t = medians(lambda r=arrow_rows: ceiling_gpu(store, r), args.repeats)
            record("GPU samples: ceiling, INSERT … SELECT numbers()", scale, arrow_rows, t)
        if gpus:
            # Sustained: enough rows that the log's inserts reach the size a busy server's do
            # (≈ 120,000 rows each), where 16× (30,720 rows, one insert) still pays the small
            # insert's fixed cost; and a fleet's shape: 64 hosts, each sending four minutes.
            g = args.gpu_requests * SUSTAINED
            t = medians(
                lambda g=g: ours_logged(
                    logged, writer, make_gpu_requests(g, seed=next(seeds), hosts=SUSTAINED_HOSTS), GPU_PATH
                ),
                args.repeats,
            )
            rows = g * GPUS_PER_HOST * TICKS_PER_REQUEST
            record("GPU samples: OTLP decode + normalise + store (ours), sustained", SUSTAINED, rows, t)

        split_spans: dict[str, float] = {}
        split_gpu: dict[str, float] = {}
        profile_spans = profile_gpu = ""
        if spans:
            base_t, base_n = baseline(store, make_batches(BATCH, seed=next(seeds)), args.baseline_spans)
            split_spans = span_split(writer, make_batches(4 * args.spans, seed=next(seeds)))
            span_batches = make_batches(4 * args.spans, seed=next(seeds))
            profile_spans = top_functions(lambda: ours(ingest, span_batches))
        if gpus:
            split_gpu = gpu_split(writer, make_gpu_requests(4 * args.gpu_requests, seed=next(seeds)))
            gpu_bodies = make_gpu_requests(4 * args.gpu_requests, seed=next(seeds))
            profile_gpu = top_functions(lambda: ours_gpu(ingest, gpu_bodies))
        writer.stop()
        store.close()

    if not args.no_http:
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp))
            try:
                if spans:
                    server.post("/v1/traces", make_batches(2 * BATCH, seed=next(seeds)))  # warm up
                if gpus:
                    server.post("/v1/metrics", make_gpu_requests(2, seed=next(seeds)))
                for scale in SCALES:
                    n = args.spans * scale
                    if spans:
                        t = server.post("/v1/traces", make_batches(n, seed=next(seeds)))
                        record("spans: end to end, HTTP POST gzip (server process)", scale, n, t)
                    if not gpus:
                        continue
                    g = args.gpu_requests * scale
                    t = server.post("/v1/metrics", make_gpu_requests(g, seed=next(seeds)))
                    record(
                        "GPU samples: end to end, HTTP POST gzip",
                        scale,
                        g * GPUS_PER_HOST * TICKS_PER_REQUEST,
                        t,
                    )
            finally:
                server.close()

    targets = {
        "spans: decode + normalise + store (ours)": ">= 100,000",
        "GPU samples: store only (38,400-row Arrow inserts)": ">= 500,000",
        "GPU samples: store only (153,600-row Arrow inserts)": ">= 500,000",
        "GPU samples: OTLP decode + normalise + store (ours)": ">= 500,000",
        "GPU samples: OTLP decode + normalise + store (ours), sustained": ">= 500,000",
    }
    results = []
    for case, by_scale in rates.items():
        unit = "spans/s" if case.startswith("spans") else "rows/s"
        for scale, rate in sorted(by_scale.items()):
            note = f"{scale}×: {args.spans * scale:,} spans" if unit == "spans/s" else f"{scale}×"
            note += f"; per CPU-second {cpu_rates[case][scale]:,.0f}"
            if scale == 1:
                note += f"; 1×/4×/16× = {' / '.join(f'{by_scale.get(s, 0):,.0f}' for s in SCALES)}"
            results.append(Result("ingest", f"{case} [{scale}×]", rate, unit, targets.get(case, ""), note))
    if spans:
        ours_rate = rates["spans: decode + normalise + store (ours)"][4]
        results.append(
            Result(
                "ingest",
                "spans: baseline, MessageToDict + one INSERT per span",
                base_n / base_t,
                "spans/s",
                "",
                f"{base_n:,} spans; ours (4×) is {ours_rate / (base_n / base_t):,.0f}× faster",
            )
        )
    results.append(
        Result(
            "ingest",
            "profile: spans",
            0.0,
            "",
            "",
            f"steps: {_shares(split_spans)}. own time: {profile_spans}" if spans else "not run",
        )
    )
    results.append(
        Result(
            "ingest",
            "profile: GPU samples",
            0.0,
            "",
            "",
            f"steps: {_shares(split_gpu)}. own time: {profile_gpu}" if gpus else "not run",
        )
    )
    print_table("OTLP ingest, one core (medians)", results[:-2])
    print(f"\nat the end: {machine()}")
    print(f"where the time goes, spans (4×): {results[-2].note}")
    print(f"where the time goes, GPU samples (4×): {results[-1].note}")
    save("ingest" if args.only is None else f"ingest-{args.only}", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
