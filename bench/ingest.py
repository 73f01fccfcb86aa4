"""OTLP span ingest: vLLM-shaped protobuf spans (~15 attributes each) decoded, normalised
and stored in chDB — spans per second on one core — against a straightforward baseline
(protobuf → MessageToDict → row-by-row inserts) and ClickHouse's own ceiling
(INSERT … SELECT from generated rows). Also end to end through the HTTP endpoint.

Run: python -m bench.ingest [--spans N] [--repeats R]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

import httpx
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.common import Result, machine, median_of, pin_one_core, print_table, save, timed

BATCH = 5_000
NS = 1_000_000_000


def _kv(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, str):
        kv.value.string_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.double_value = float(value)  # type: ignore[arg-type]
    return kv


def make_batches(total: int, *, seed: int = 7) -> list[bytes]:
    """Serialized ExportTraceServiceRequests of BATCH vLLM `llm_request` spans each."""
    rng = random.Random(seed)
    t0 = time.time_ns() - 3 * 86400 * NS
    batches = []
    made = 0
    while made < total:
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(
            [
                _kv("host.name", f"gpu-node-{made // BATCH % 16}"),
                _kv("inferwatch.cluster", "prod"),
                _kv("inferwatch.deployment", "chat-70b"),
                _kv("service.name", "vllm"),
            ]
        )
        rs.resource.attributes.add(
            key="inferwatch.gpu.uuids"
        ).value.array_value.values.add().string_value = "GPU-1"
        spans = rs.scope_spans.add().spans
        for i in range(min(BATCH, total - made)):
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


def open_bench_store(path: Path, database: str):  # type: ignore[no-untyped-def]
    from api.settings import Settings
    from api.store.gateway import Store
    from api.store.migrate import migrate
    from api.store.transports import ChdbTransport

    settings = Settings(data_dir=path, clickhouse_database=database)
    store = Store(ChdbTransport(path / "clickhouse", database, query_timeout_s=600))
    migrate(store, settings)
    return store, settings


def ours(store, batches: list[bytes]) -> float:  # type: ignore[no-untyped-def]
    """Decode + normalise + store, as the /v1/traces handler does. Returns seconds."""
    from api.ingest.service import dedup_token
    from api.ingest.traces import normalise_traces

    def run() -> None:
        now = time.time_ns()
        for body in batches:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            batch = normalise_traces(request, max_attribute_bytes=8192, now_ns=now)
            store.insert("requests", batch.to_arrow(), dedup_token=dedup_token("requests", batch.keys()))

    return timed(run)


def decode_only(batches: list[bytes]) -> float:
    from api.ingest.traces import normalise_traces

    def run() -> None:
        now = time.time_ns()
        for body in batches:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            normalise_traces(request, max_attribute_bytes=8192, now_ns=now).to_arrow()

    return timed(run)


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
    from datetime import datetime

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


def ceiling(store, n: int) -> float:  # type: ignore[no-untyped-def]
    """ClickHouse inserting n generated request rows from a table function: the insert
    ceiling, with the same materialized views attached."""
    from api.store.gateway import Query

    q = Query(
        "bench.ceiling",
        "INSERT INTO requests (time, end_time, trace_id, span_id, request_id, cluster, host, deployment, "
        "model, framework, prompt_tokens, output_tokens, queue_s, ttft_s, prefill_s, decode_s, e2e_s, "
        "finish_reason, gpu_uuids) "
        "SELECT now64(6) - number / 20, now64(6) - number / 20 + 3, hex(cityHash64(number)), "
        "hex(cityHash64(number, 1)), toString(number), 'prod', 'gpu-node-1', 'chat-70b', 'llama', 'vllm', "
        "50 + number % 4000, 10 + number % 800, 0.1, 0.3, 0.2, 2.5, 3.0, 'stop', ['GPU-1'] "
        "FROM numbers({n:UInt64})",
    )
    return timed(lambda: store.execute(q, n=n))


def end_to_end(batches: list[bytes], data_dir: Path) -> float:
    """POST the batches (gzip, as a collector sends them) to a server in another process."""
    import gzip

    port = 18000 + os.getpid() % 1000
    env = {
        **os.environ,
        "INFERWATCH_DATA_DIR": str(data_dir),
        "INFERWATCH_PORT": str(port),
        "INFERWATCH_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(
                    "server did not start: " + (server.stderr.read().decode() if server.stderr else "")
                )
            time.sleep(0.2)
        bodies = [gzip.compress(b, 1) for b in batches]
        with httpx.Client(timeout=120) as client:
            started = time.perf_counter()
            for body in bodies:
                reply = client.post(
                    url + "/v1/traces",
                    content=body,
                    headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
                )
                reply.raise_for_status()
            return time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)


def profile(store, batches: list[bytes]) -> str:  # type: ignore[no-untyped-def]
    profiler = cProfile.Profile()
    profiler.enable()
    ours(store, batches)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(8)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "tottime" in line)
    return "\n".join(lines[start : start + 9])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-spans", type=int, default=2_000)
    args = parser.parse_args(argv)
    pinned = pin_one_core()
    print(f"machine: {machine()}; {pinned}")
    batches = make_batches(args.spans)
    n = args.spans
    with tempfile.TemporaryDirectory() as tmp:
        store, _ = open_bench_store(Path(tmp), "bench_ingest")
        ours(store, batches[:2])  # warm up
        t_ours, all_ours = median_of(
            lambda: ours(store, make_batches(n, seed=random.randrange(10**9))), args.repeats
        )
        t_decode, _ = median_of(lambda: decode_only(batches), args.repeats)
        t_base, base_n = baseline(store, batches, args.baseline_spans)
        t_ceiling, _ = median_of(lambda: ceiling(store, n), args.repeats)
        hot = profile(store, make_batches(n, seed=99))
        store.close()
    with tempfile.TemporaryDirectory() as tmp:
        t_e2e, _ = median_of(
            lambda: end_to_end(make_batches(n, seed=random.randrange(10**9)), Path(tmp)),
            max(1, args.repeats // 2),
        )
    rate = n / t_ours
    results = [
        Result(
            "ingest",
            "decode + normalise + store (ours)",
            rate,
            "spans/s",
            ">= 100,000",
            f"median of {args.repeats}, {n:,} spans, batches of {BATCH:,}",
        ),
        Result("ingest", "decode + normalise only (ours)", n / t_decode, "spans/s"),
        Result(
            "ingest",
            "baseline: MessageToDict + row inserts",
            base_n / t_base,
            "spans/s",
            "",
            f"{base_n:,} spans; ours is {rate / (base_n / t_base):,.0f}x",
        ),
        Result(
            "ingest",
            "ceiling: INSERT … SELECT numbers()",
            n / t_ceiling,
            "rows/s",
            "",
            f"ours reaches {rate / (n / t_ceiling):.0%} of it",
        ),
        Result(
            "ingest",
            "end to end: HTTP POST, gzip (server process)",
            n / t_e2e,
            "spans/s",
            "",
            "client and server share the machine",
        ),
    ]
    print_table("OTLP span ingest", results)
    print("\nwhere the time goes (decode + store, top functions by own time):\n" + hot)
    save("ingest", results)
    _ = all_ours
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
