"""Web benchmark: server time of every page and JSON API call on 30 days of a 256-GPU fleet.

The data is SIMULATED and written straight into the minute rollups with
`INSERT … SELECT … FROM numbers()` (no ingest): 32 hosts × 8 GPUs (H100, A100, L4), seven
deployments with diurnal load and idle nights, four spare hosts, engine gauges per host, and
two million raw requests for the explorer. Rollups are what every page reads, so this is
the load that matters; ingest has its own benchmark.

Run: `python -m bench.web [--gpus 256] [--days 30] [--repeats 20]` (a fresh chDB store in a
temporary directory; about two minutes to fill on two cores; `--data-dir DIR` fills DIR the
first time and reuses it after, `--only LABEL` measures some calls). Prints p50 and p95 of
each call, measured in-process through the ASGI app (no network), after one warm-up call,
and of each call with the kept results dropped first (`--cold-repeats`).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import Result, machine, print_table, save

TARGET_P95_MS = 300.0

DEPLOYMENTS = [
    "chat-llama-70b",
    "chat-llama-8b",
    "batch-embed",
    "batch-summarise",
    "code-assist",
    "rag-qwen-32b",
    "overprov-mistral",
]

# Per GPU minute; `n` numbers GPU-minutes, GPU = n % gpus, minute = n / gpus.
_GPU_MINUTE = """
INSERT INTO gpu_minute
SELECT
    minute, 'prod' AS cluster, host, gpu_uuid, gpu_index, gpu_name, deployment,
    60 AS samples,
    toUInt8(least(100, util + 8)) AS util_gpu_max, toUInt64(util * 60) AS util_gpu_sum, 60 AS util_gpu_n,
    toUInt8(least(100, util * 0.7)) AS util_mem_max,
    if(hopper, toFloat32(least(100, util * 0.8 + 4)), NULL) AS sm_activity_max,
    if(hopper, util * 0.8 * 60, 0) AS sm_activity_sum, if(hopper, 60, 0) AS sm_activity_n,
    if(hopper, toFloat32(util * 0.6), NULL) AS dram_bw_max, if(hopper, util * 0.6 * 60, 0) AS dram_bw_sum,
    if(hopper, toFloat32(util * 0.5), NULL) AS tensor_active_max,
    toUInt64(if(deployment = '', 0, 60e9 + util * 1e8)) AS mem_used_max,
    toUInt64(if(deployment = '', 0, 60e9)) AS mem_used_min,
    toUInt64(80e9) AS mem_total_max,
    toUInt64((80 + util * 5) * 1000 * 60) AS power_sum_mw, 60 AS power_n,
    toUInt32((90 + util * 5) * 1000) AS power_max_mw, toUInt32(700000) AS power_limit_mw,
    toUInt64(n) AS energy_min_mj, toUInt64(n + 1) AS energy_max_mj,
    toUInt8(35 + util / 3) AS temperature_max_c,
    toUInt16(deployment != '') AS procs_max
FROM (
    SELECT
        number AS n,
        toDateTime({start:DateTime('UTC')}) + intDiv(number, {gpus:UInt32}) * 60 AS minute,
        number % {gpus:UInt32} AS g,
        intDiv(g, 8) AS h,
        concat('gpu-node-', leftPad(toString(h), 2, '0')) AS host,
        concat('GPU-bench-', leftPad(toString(g), 4, '0')) AS gpu_uuid,
        toUInt16(g % 8) AS gpu_index,
        multiIf(h < {hosts:UInt32} / 2, 'NVIDIA H100 80GB HBM3',
                h < {hosts:UInt32} * 7 / 8, 'NVIDIA A100-SXM4-80GB', 'NVIDIA L4') AS gpu_name,
        h < {hosts:UInt32} / 2 AS hopper,
        if(h >= {hosts:UInt32} * 7 / 8, '', {deployments:Array(String)}[1 + h % 7]) AS deployment,
        toHour(minute) AS hr,
        -- Diurnal demand peaking mid-afternoon; nights near zero for the batch-free decks.
        greatest(0., sin((hr - 8) * pi() / 12)) AS day,
        if(deployment = '', 0,
           least(100., greatest(0., 85 * day * (0.4 + (h % 7) / 10) + (cityHash64(number) % 12) - 4
                                   + if(deployment LIKE 'batch-%' AND hr < 6, 70, 0)))) AS util
    FROM numbers({rows:UInt64})
)
"""

_INFLIGHT_MINUTE = """
INSERT INTO inflight_minute
SELECT minute, cluster, host, gpu_uuid, deployment, util_gpu_sum / 60 * 0.6 AS busy_s,
       toUInt64(util_gpu_sum / 600) AS requests
FROM gpu_minute
WHERE util_gpu_sum > 60 * 6
"""

_DEPLOYMENT_MINUTE = """
INSERT INTO deployment_minute
SELECT
    minute, 'prod' AS cluster, deployment, model, 'vllm' AS framework,
    requests, toUInt64(requests / 200) AS errors,
    toUInt64(requests * 900) AS prompt_tokens_sum, toUInt64(requests * 200) AS cached_tokens_sum,
    toUInt64(requests * 250) AS output_tokens_sum,
    requests * 0.05 * (1 + load) AS queue_sum, requests * 0.3 * (1 + load) AS ttft_sum,
    requests * 0.25 AS prefill_sum, requests * 250 * tpot AS decode_sum,
    requests * (0.3 * (1 + load) + 250 * tpot) AS e2e_sum, requests AS phased,
    3 + 250 * tpot * 2 AS e2e_max,
    arrayReduce('quantilesTDigestState(0.5, 0.9, 0.95, 0.99)',
                arrayMap(x -> x * (1 + load), [0.2, 0.3, 0.5, 0.9, 1.6])) AS ttft_q,
    arrayReduce('quantilesTDigestState(0.5, 0.9, 0.95, 0.99)',
                [tpot * 0.8, tpot, tpot * 1.1, tpot * 1.5, tpot * 2.2]) AS tpot_q,
    arrayReduce('quantilesTDigestState(0.5, 0.9, 0.95, 0.99)',
                [4.0 * (1 + load), 6.0, 8.0, 12.0, 20.0 * (1 + load)]) AS e2e_q,
    arrayReduce('quantilesTDigestState(0.5, 0.9, 0.95, 0.99)',
                [0.01, 0.02, 0.05 * (1 + load), 0.2 * (1 + load), 0.6 * (1 + load)]) AS queue_q,
    arrayReduce('uniqState', ['gpu-node-00', 'gpu-node-01', 'gpu-node-02', 'gpu-node-03']) AS hosts,
    ([toUInt16(7 * 16 + 8)], [requests], [requests * 6.0], [requests * 4.5]) AS shape_hist,
    ([toUInt16(10)], [requests], [requests * 0.3], [requests * 200]) AS prompt_hist
FROM (
    SELECT
        toDateTime({start:DateTime('UTC')}) + intDiv(number, 7) * 60 AS minute,
        {deployments:Array(String)}[1 + number % 7] AS deployment,
        concat('model-', deployment) AS model,
        greatest(0., sin((toHour(minute) - 8) * pi() / 12)) AS load,
        toUInt64(5 + 120 * load * (1 + number % 7) / 4 + cityHash64(number) % 7) AS requests,
        0.02 + (number % 7) * 0.004 AS tpot
    FROM numbers({rows:UInt64})
)
"""

_ENGINE_MINUTE = """
INSERT INTO engine_minute
SELECT
    minute, 'prod' AS cluster, deployment, host, concat(host, ':8000') AS instance, metric, 0 AS le,
    'vllm' AS engine, value * 0.8 AS value_min, value * 1.2 AS value_max, value * 12 AS value_sum, 12 AS n
FROM (
    SELECT
        toDateTime({start:DateTime('UTC')}) + intDiv(number, {hosts:UInt32} * 3) * 60 AS minute,
        intDiv(number % ({hosts:UInt32} * 3), 3) AS h,
        ['requests_running', 'requests_waiting', 'kv_cache_usage'][1 + number % 3] AS metric,
        concat('gpu-node-', leftPad(toString(h), 2, '0')) AS host,
        {deployments:Array(String)}[1 + h % 7] AS deployment,
        greatest(0., sin((toHour(minute) - 8) * pi() / 12)) AS load,
        multiIf(metric = 'requests_running', 2 + 30 * load, metric = 'requests_waiting', 4 * load * load,
                0.1 + 0.8 * load) AS value
    FROM numbers({rows:UInt64})
    WHERE h < {hosts:UInt32} * 7 / 8
)
"""

_REQUESTS = """
INSERT INTO requests
SELECT
    time, time + toIntervalMillisecond(toUInt64(e2e * 1000)) AS end_time,
    hex(cityHash64(number, 1)) AS trace_id, hex(cityHash64(number, 2)) AS span_id,
    concat('cmpl-', toString(number)) AS request_id, 'prod' AS cluster,
    concat('gpu-node-', leftPad(toString(number % 28), 2, '0')) AS host,
    {deployments:Array(String)}[1 + number % 7] AS deployment, concat('model-', deployment) AS model,
    'vllm' AS framework, toUInt32(100 + cityHash64(number) % 4000) AS prompt_tokens,
    toUInt32(0) AS cached_tokens, toUInt32(output) AS output_tokens, toUInt16(1) AS n,
    toUInt32(1024) AS max_tokens, toFloat32(0.7) AS temperature,
    queue, queue + prefill AS ttft_s, prefill, decode, e2e,
    if(number % 200 = 0, 'error', if(output = 1024, 'length', 'stop')) AS finish_reason,
    if(number % 200 = 0, 'engine error', '') AS error,
    [concat('GPU-bench-', leftPad(toString((number % 28) * 8), 4, '0'))] AS gpu_uuids
FROM (
    SELECT number,
           toDateTime64({start:DateTime('UTC')}, 6)
               + toIntervalMillisecond(number * {spacing_ms:UInt64}) AS time,
           (cityHash64(number, 3) % 100) / 1000 AS queue,
           0.05 + (cityHash64(number, 4) % 300) / 1000 AS prefill,
           least(1024, 10 + cityHash64(number, 5) % 1100) AS output, output * 0.025 AS decode,
           queue + prefill + decode AS e2e
    FROM numbers({rows:UInt64})
)
"""


def fill(store: object, *, gpus: int, days: int, requests: int, now: datetime) -> None:
    """Write `days` of simulated rollups for `gpus` GPUs ending at `now` (see module doc)."""
    from api.store import Query, Store

    assert isinstance(store, Store)
    hosts = gpus // 8
    minutes = days * 1440
    start = (now - timedelta(days=days)).replace(second=0, microsecond=0)
    common = {"start": start.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S"), "deployments": DEPLOYMENTS}
    # Raw requests go in with the views on them detached: the rollups are filled directly
    # below, consistently with the GPU minutes.
    steps = [
        ("detach", "DETACH TABLE deployment_minute_mv", {}),
        ("detach", "DETACH TABLE inflight_minute_mv", {}),
        ("requests", _REQUESTS, {"rows": requests, "spacing_ms": days * 86_400_000 // max(1, requests)}),
        ("attach", "ATTACH TABLE deployment_minute_mv", {}),
        ("attach", "ATTACH TABLE inflight_minute_mv", {}),
        ("gpu_minute", _GPU_MINUTE, {"rows": gpus * minutes, "gpus": gpus, "hosts": hosts}),
        ("inflight_minute", _INFLIGHT_MINUTE, {}),
        ("deployment_minute", _DEPLOYMENT_MINUTE, {"rows": 7 * minutes}),
        ("engine_minute", _ENGINE_MINUTE, {"rows": hosts * 3 * minutes, "hosts": hosts}),
    ]
    for name, sql, params in steps:
        started = time.perf_counter()
        names = set(_placeholders(sql))
        values = {k: v for k, v in {**common, **params}.items() if k in names}
        store.execute(Query(f"bench.fill.{name}", sql), **values)
        print(f"  filled {name} in {time.perf_counter() - started:.1f} s", flush=True)
    settle(store, start)


HOURLY_ROLLUPS = (
    "findings_gpu_hour",
    "findings_deployment_hour",
    "findings_deployment_day",
    "findings_engine_hour",
)


def settle(store: object, start: datetime) -> None:
    """What a fleet watched for weeks looks like: the hourly rollups merged (their views
    write one row per view and insert; background merges fold them within minutes on a
    live server), and the hourly rollups' migration recorded as run before the data
    began, so the findings read them, not the minute rollups, for every whole hour.
    Idempotent: a reused store can be settled again (`--settle`)."""
    from api.store import Query, Store
    from api.store.sql.findings import ROLLUPS_MIGRATION

    assert isinstance(store, Store)
    for table in HOURLY_ROLLUPS:
        started = time.perf_counter()
        store.execute(Query("bench.optimize", f"OPTIMIZE TABLE {table} FINAL"))
        print(f"  merged {table} in {time.perf_counter() - started:.1f} s", flush=True)
    store.execute(
        Query(
            "bench.backdate",
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES ({version:UInt32}, 'findings', 'bench', {at:DateTime64(6)})",
        ),
        version=ROLLUPS_MIGRATION,
        # A day before the data: a 30-day window ending a few minutes after the fill starts
        # before the data, and its first hour must come from the hourly rollups too.
        at=(start - timedelta(days=1)).replace(tzinfo=None),
    )


def _placeholders(sql: str) -> list[str]:
    return re.findall(r"\{(\w+):", sql)


def calls(uuid: str, span: str) -> list[tuple[str, str]]:
    """(label, path) for each page and API call measured."""
    return [
        ("page /", "/"),
        ("page /index.json", "/index.json"),
        ("page / (30d)", "/?window=30d"),
        ("page /fleet", "/fleet"),
        ("page /fleet (30d)", "/fleet?window=30d"),
        ("page /gpus/{uuid}", f"/gpus/{uuid}"),
        ("page /deployments", "/deployments"),
        ("page /deployments (30d)", "/deployments?window=30d"),
        ("page /deployments/{name}", "/deployments/prod/chat-llama-70b"),
        ("page /findings", "/findings"),
        ("page /findings (30d)", "/findings?window=30d"),
        ("page /requests", "/requests"),
        ("page /requests sorted by e2e", "/requests?sort=e2e"),
        ("page /requests/{span}", f"/requests/{span}"),
        ("api /api/v1/gpus", "/api/v1/gpus"),
        ("api /api/v1/gpus (30d)", "/api/v1/gpus?window=30d"),
        ("api /api/v1/gpus/{uuid}", f"/api/v1/gpus/{uuid}"),
        ("api /api/v1/fleet", "/api/v1/fleet"),
        ("api /api/v1/deployments", "/api/v1/deployments"),
        ("api /api/v1/deployments/{name}", "/api/v1/deployments/prod/chat-llama-70b"),
        ("api /api/v1/requests", "/api/v1/requests?limit=100"),
        ("api /api/v1/findings", "/api/v1/findings"),
        ("api /api/v1/cost", "/api/v1/cost"),
    ]


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=256)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cold-repeats", type=int, default=20, help="runs with kept results dropped")
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse a filled store (skips filling)")
    parser.add_argument("--settle", action="store_true", help="merge a reused store's rollups first")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="measure only calls whose label matches this regex (repeatable)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.routes.results import forget
    from api.settings import Settings
    from api.store import open_store
    from api.store.migrate import migrate

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="inferwatch-bench-web-"))
    settings = Settings(data_dir=data_dir, query_timeout_s=3600)
    store = open_store(settings)
    migrate(store, settings)
    now = datetime.now(UTC)
    from api.store import Query

    filled = store.scalar(Query("bench.count", "SELECT count() FROM gpu_minute"))
    if not filled:
        print(f"filling {args.days} days × {args.gpus} GPUs (simulated) into {data_dir} …", flush=True)
        fill(store, gpus=args.gpus, days=args.days, requests=args.requests, now=now)
    elif args.settle:
        first = store.scalar(Query("bench.first", "SELECT toUInt32(min(minute)) FROM gpu_minute"))
        settle(store, datetime.fromtimestamp(int(first), UTC))
    span = store.scalar(Query("bench.span", "SELECT span_id FROM requests ORDER BY time DESC LIMIT 1"))
    app = create_app(settings, store=store)
    gc.freeze()  # as `inferwatch serve` does once the app is built
    results: list[Result] = []
    load = os.getloadavg()[0]
    print(f"\n{machine()}; load average {load:.1f} at start; {args.repeats} runs per call after one warm-up")
    print("wall: server time per call as measured; cpu: CPU seconds the server process spent on it")
    print("(all its threads, chDB's included) — on a shared machine, wall includes waiting for a core.")
    print(
        "uncached, unc. p95: wall p50 and p95 with kept results (api.routes.results) dropped before each run."
    )
    print(
        f"{'call':<38} {'wall p50':>9} {'wall p95':>9} {'cpu p50':>8} {'cpu p95':>8} "
        f"{'uncached':>9} {'unc. p95':>9}  status"
    )
    # From loopback with no token created: the server's local mode serves it without credentials.
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        for label, path in calls("GPU-bench-0000", span or "none"):
            if args.only and not any(re.search(o, label) for o in args.only):
                continue
            status = client.get(path).status_code
            if status != 200:
                print(f"{label:<38} {'—':>9} {'—':>9} {'—':>8} {'—':>8}  {status}: not measured")
                continue
            wall, cpu = [], []
            for _ in range(args.repeats):
                started, started_cpu = time.perf_counter(), time.process_time()
                client.get(path)
                wall.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
            # The same call with the kept results (api.routes.results) dropped before each
            # run: what a page costs when the data changed since it was last computed.
            cold = []
            for _ in range(args.cold_repeats):
                forget(store)
                started = time.perf_counter()
                client.get(path)
                cold.append((time.perf_counter() - started) * 1000)
            w50, w95, c50, c95 = _p(wall, 50), _p(wall, 95), _p(cpu, 50), _p(cpu, 95)
            flag = (
                ""
                if w95 <= TARGET_P95_MS
                else ("  wall over target" if c95 <= TARGET_P95_MS else "  OVER TARGET")
            )
            u50, u95 = (_p(cold, 50), _p(cold, 95)) if cold else (float("nan"), float("nan"))
            if u95 > TARGET_P95_MS and not flag:
                flag = "  uncached over target"
            print(
                f"{label:<38} {w50:>9.1f} {w95:>9.1f} {c50:>8.1f} {c95:>8.1f} {u50:>9.1f} {u95:>9.1f}"
                f"  {status}{flag}",
                flush=True,
            )
            results.append(Result("web", f"{label} p50", w50, "ms", note=f"cpu {c50:.0f} ms"))
            if cold:
                results.append(Result("web", f"{label} uncached p50", u50, "ms"))
                results.append(
                    Result("web", f"{label} uncached p95", u95, "ms", target=f"<= {TARGET_P95_MS:.0f} ms")
                )
            results.append(
                Result(
                    "web",
                    f"{label} p95",
                    w95,
                    "ms",
                    target=f"<= {TARGET_P95_MS:.0f} ms",
                    note=f"cpu {c95:.0f} ms",
                )
            )
    print_table("web: server time per call (simulated fleet, rollups filled directly)", results)
    save("web", results)
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
