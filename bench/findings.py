"""Benchmark: every finding over 30 days of a simulated fleet, read from the rollups.

The rollup tables are filled directly with INSERT … SELECT FROM numbers() (SIMULATED data:
the shape of 1 s sampling after the materialized views, without pushing 660 M raw samples
through ingest). Per fleet size: rows in the rollups, then the median of `--runs` timings
of `run_findings` over the 30-day window, and of each query.

    python bench/findings.py                  # 64 and 256 GPUs (¼× and 1×)
    python bench/findings.py --gpus 256 1024  # 1× and 4×
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.findings.engine import align, compute_findings, load_inputs
from api.settings import Settings
from api.store import Store
from api.store.gateway import Query
from api.store.migrate import migrate
from api.store.transports import ChdbTransport
from api.timewindow import Window

DAYS = 30
GPUS_PER_DEPLOYMENT = 8
GPUS_PER_REPLICA = 4

# {g}: GPUs; {start}: window start (epoch seconds). GPU n belongs to deployment n // 8,
# host n // 8; deployments 0–1 idle 01:00–07:00; even deployments at 20 %, odd at 60 %.
FILL = {
    "gpu_minute": """
INSERT INTO gpu_minute (minute, cluster, host, gpu_uuid, gpu_index, gpu_name, deployment, samples,
    util_gpu_max, util_gpu_sum, util_gpu_n, util_mem_max, sm_activity_max, sm_activity_sum, sm_activity_n,
    dram_bw_max, dram_bw_sum, mem_used_max, mem_used_min, mem_total_max, procs_max)
SELECT toDateTime({start} + intDiv(number, {g}) * 60, 'UTC') AS m, 'sim',
    concat('host-', toString(intDiv(number % {g}, 8))), concat('GPU-', toString(number % {g})),
    toUInt16(number % 8), 'NVIDIA H100 80GB HBM3', concat('dep-', toString(intDiv(number % {g}, 8))), 60,
    toUInt8(if(idle, 0, u + 10)), toUInt64(if(idle, 0, (u + 10) * 60)), 60, toUInt8(if(idle, 0, 30)),
    toFloat32(if(idle, 0, u)), if(idle, 0, u * 60), 60, toFloat32(if(idle, 0, 25)), if(idle, 0, 25 * 60),
    70000000000, 70000000000, 80000000000, 1
FROM (SELECT number, intDiv(number % {g}, 8) < 2 AND toHour(toDateTime({start} + intDiv(number,
    {g}) * 60)) BETWEEN 1 AND 6
        AS idle, if(intDiv(number % {g}, 8) % 2 = 0, 20, 60) AS u
      FROM numbers({g} * {minutes}))
""",
    "inflight_minute": """
INSERT INTO inflight_minute (minute, cluster, host, gpu_uuid, deployment, busy_s, requests)
SELECT toDateTime({start} + intDiv(number, {g}) * 60, 'UTC'), 'sim', concat('host-',
    toString(intDiv(number % {g}, 8))),
    concat('GPU-', toString(number % {g})), concat('dep-', toString(intDiv(number % {g}, 8))), 120.0, 20
FROM numbers({g} * {minutes})
WHERE NOT (intDiv(number % {g}, 8) < 2 AND toHour(toDateTime({start} + intDiv(number,
    {g}) * 60)) BETWEEN 1 AND 6)
""",
    "fleet_5m": """
INSERT INTO fleet_5m (bucket, cluster, deployment, gpus, util_sum, util_n)
SELECT toStartOfFiveMinutes(minute) AS b, cluster, deployment, uniqExactState(toString(gpu_uuid)),
    sum(sm_activity_sum), sum(sm_activity_n)
FROM gpu_minute GROUP BY b, cluster, deployment
""",
    "deployment_minute": """
INSERT INTO deployment_minute (minute, cluster, deployment, model, framework, requests, errors,
    prompt_tokens_sum,
    cached_tokens_sum, output_tokens_sum, queue_sum, ttft_sum, prefill_sum, decode_sum, e2e_sum,
        phased, e2e_max,
    ttft_q, tpot_q, e2e_q, queue_q, hosts, shape_hist, prompt_hist)
SELECT toDateTime({start} + intDiv(number, {d}) * 60, 'UTC') AS m, 'sim', concat('dep-',
    toString(number % {d})),
    'meta-llama/Llama-3.1-70B-Instruct', 'vllm', 60, 0, 60 * 800, 0, 60 * 300, 6.0, 24.0, 18.0,
        540.0, 570.0, 60, 12.0,
    (SELECT quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(0.2 + number / 1000) FROM numbers(60)),
    (SELECT quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(0.03 + number / 100000) FROM numbers(60)),
    (SELECT quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(9.5 + number / 100) FROM numbers(60)),
    (SELECT quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(0.1) FROM numbers(60)),
    (SELECT uniqState(toString(number)) FROM numbers(2)),
    ([toUInt16(9 * 16 + 8)], [toUInt64(60)], [570.0], [540.0]),
    ([toUInt16(9)], [toUInt64(60)], [24.0], [toUInt64(0)])
FROM numbers({d} * {minutes})
""",
    "engine_minute": """
INSERT INTO engine_minute (minute, cluster, deployment, host, instance, metric, le, engine,
    value_min, value_max,
    value_sum, n)
SELECT toDateTime({start} + intDiv(number, {i} * 3) * 60, 'UTC'), 'sim',
    concat('dep-', toString(intDiv(intDiv(number % ({i} * 3), 3), 2))),
    concat('host-', toString(intDiv(intDiv(number % ({i} * 3), 3), 2))),
    concat('pod-', toString(intDiv(number % ({i} * 3), 3))),
    ['requests_running', 'kv_cache_usage', 'preemptions'][number % 3 + 1], 0, 'vllm',
    [4.0, 0.6, toFloat64(intDiv(number, {i} * 3))][number % 3 + 1],
    [4.0, 0.6, toFloat64(intDiv(number, {i} * 3))][number % 3 + 1],
    [48.0, 7.2, toFloat64(intDiv(number, {i} * 3)) * 12][number % 3 + 1], 12
FROM numbers({i} * 3 * {minutes})
""",
}


def fill(store: Store, gpus: int, start: int) -> dict[str, int]:
    values = {
        "g": gpus,
        "d": gpus // GPUS_PER_DEPLOYMENT,
        "i": gpus // GPUS_PER_REPLICA,
        "start": start,
        "minutes": DAYS * 1440,
    }
    rows = {}
    for table, sql in FILL.items():
        store.execute(Query(f"bench.fill.{table}", sql.format(**values)))
        store.execute(Query("bench.optimize", f"OPTIMIZE TABLE {table} FINAL"))
        rows[table] = int(store.scalar(Query("bench.count", f"SELECT count() FROM {table}")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window = align(Window(end - timedelta(days=DAYS), end))
    print(
        f"findings over {DAYS} days, SIMULATED rollups filled with INSERT … SELECT FROM numbers() "
        f"(1 s sampling shape), median of {args.runs} runs"
    )
    print(
        f"{'GPUs':>6} {'GPU-minutes':>12} {'other rollup rows':>18} {'findings':>9} {'load s':>8} "
        f"{'compute s':>10} {'total s':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for gpus in args.gpus:
            settings = Settings(data_dir=Path(tmp), clickhouse_database=f"bench_{gpus}")
            store = Store(ChdbTransport(Path(tmp) / "ch", settings.clickhouse_database, query_timeout_s=600))
            migrate(store, settings)
            rows = fill(store, gpus, int(window.start.timestamp()))
            loads, computes, n = [], [], 0
            for _ in range(args.runs):
                t0 = time.perf_counter()
                inputs = load_inputs(store, settings, window)
                t1 = time.perf_counter()
                n = len(compute_findings(inputs, settings, window))
                t2 = time.perf_counter()
                loads.append(t1 - t0)
                computes.append(t2 - t1)
            load, comp = statistics.median(loads), statistics.median(computes)
            other = sum(v for k, v in rows.items() if k != "gpu_minute")
            print(
                f"{gpus:>6} {rows['gpu_minute']:>12,} {other:>18,} {n:>9} {load:>8.2f} {comp:>10.2f} "
                f"{load + comp:>8.2f}",
                flush=True,
            )
            store.execute(Query("bench.drop", f"DROP DATABASE {settings.clickhouse_database} SYNC"))
            store.close()


if __name__ == "__main__":
    main()
