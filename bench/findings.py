"""Benchmark: every finding over 30 days of a simulated fleet, read from the rollups.

The data is SIMULATED: the minute rollups are filled with INSERT … SELECT FROM numbers()
in the shape 1 s sampling gives them (60 samples a GPU-minute), without pushing 660 M raw
samples through ingest; the findings rollups of migration 0003 are then filled by running
each of their materialized views' own SELECT over the minute rollups (a backfill, the same
SQL the views run on every insert), and that migration is recorded as run before the
window, as if inferwatch had been collecting for the whole 30 days. Filling is not timed.

The fleet: 8 GPUs per host and per deployment, 4 GPUs per engine instance; utilisation
follows the time of day with noise; every fourth deployment idles 01:00–07:00 and every
eighth holds its GPUs without ever computing, so about a fifth of all GPU-minutes are
idle (the per-minute detail the hourly rollup keeps for low minutes is not empty).

Measured per fleet size (1×, 4×, 16× = 16, 64, 256 GPUs by default): the median of
`--runs` runs of the findings (`load_inputs` + `compute_findings`, what `run_findings`
does) over the 30 days ending at the last whole hour, wall and CPU time (CPU time includes
chDB's threads: it runs in this process), split into each query, turning rows into inputs,
and the finding functions; and, where it takes under a minute, the same read from the
minute rollups alone (what the findings read before migration 0003), as a baseline
measured in the same run. The machine is shared: the load average is printed per size.

    python -m bench.findings
    python -m bench.findings --gpus 256 --runs 5 --verbose
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.findings.engine import compute_findings, load_inputs
from api.findings.spans import align, floor_hour, split
from api.settings import Settings
from api.store import Store
from api.store.gateway import Query
from api.store.migrate import migrate
from api.store.sql.findings import ROLLUPS_MIGRATION
from api.store.transports import ChdbTransport
from api.timewindow import Window
from bench.common import Result, machine, print_table, save

DAYS = 30
GPUS_PER_DEPLOYMENT = 8
GPUS_PER_REPLICA = 4
MINUTE_ONLY_MAX_GPUS = 64
VERBOSE = False  # the minute-rollup path takes ~15 s at 256 GPUs: run it smaller

# {g}: GPUs, {d}: deployments, {i}: engine instances, {start}: first minute (epoch s),
# {minutes}: minutes filled. GPU n: deployment and host n // 8, instance n // 4.
# `idle`: deployment % 4 = 0 between 01:00 and 07:00, or deployment % 8 = 3 always.
_IDLE = (
    "(intDiv({gpu}, 8) % 8 = 3 OR (intDiv({gpu}, 8) % 4 = 0 "
    "AND toHour(toDateTime({start} + {minute} * 60)) BETWEEN 1 AND 6))"
)
# SM activity: 30–78 % by deployment, times a daily curve, plus noise of ±5.
_SM = (
    "toUInt8(greatest(1, least(100, (30 + intDiv({gpu}, 8) % 5 * 12) * "
    "(0.75 + 0.25 * sin((toHour(toDateTime({start} + {minute} * 60)) - 8) / 24 * 2 * pi())) "
    "+ toInt32(cityHash64({gpu}, {minute}) % 11) - 5)))"
)


def _gpu(expr: str) -> str:
    return expr.format(gpu="number % {g}", minute="intDiv(number, {g})", start="{start}")


FILL = {
    "gpu_minute": f"""
INSERT INTO gpu_minute (minute, cluster, host, gpu_uuid, gpu_index, gpu_name, deployment, samples,
    util_gpu_max, util_gpu_sum, util_gpu_n, util_mem_max, sm_activity_max, sm_activity_sum, sm_activity_n,
    dram_bw_max, dram_bw_sum, mem_used_max, mem_used_min, mem_total_max, procs_max)
SELECT toDateTime({{start}} + intDiv(number, {{g}}) * 60, 'UTC'), 'sim',
    concat('host-', toString(intDiv(number % {{g}}, 8))), concat('GPU-', toString(number % {{g}})),
    toUInt16(number % 8), 'NVIDIA H100 80GB HBM3', concat('dep-', toString(intDiv(number % {{g}}, 8))), 60,
    if(idle, toUInt8(number % 3), least(100, sm + 20)),
    if(idle, number % 3 * 30, (least(100, sm + 20) - 3) * 60),
    60, if(idle, 0, toUInt8(sm / 2)), if(idle, toUInt8(number % 2), sm), if(idle, 0, (sm - 3) * 60), 60,
    if(idle, 0, toUInt8(sm * 0.8)), if(idle, 0, (sm - 3) * 48), 70000000000, 70000000000, 80000000000, 1
FROM (SELECT number, {_gpu(_IDLE)} AS idle, {_gpu(_SM)} AS sm FROM numbers({{g}} * {{minutes}}))
""",
    "inflight_minute": f"""
INSERT INTO inflight_minute (minute, cluster, host, gpu_uuid, deployment, busy_s, requests)
SELECT toDateTime({{start}} + intDiv(number, {{g}}) * 60, 'UTC'), 'sim',
    concat('host-', toString(intDiv(number % {{g}}, 8))), concat('GPU-', toString(number % {{g}})),
    concat('dep-', toString(intDiv(number % {{g}}, 8))), 150.0, 20
FROM numbers({{g}} * {{minutes}})
WHERE NOT {_gpu(_IDLE)}
""",
    "deployment_minute": f"""
INSERT INTO deployment_minute (minute, cluster, deployment, model, framework, requests, errors,
    prompt_tokens_sum, cached_tokens_sum, output_tokens_sum, queue_sum, ttft_sum, prefill_sum, decode_sum,
    e2e_sum, phased, e2e_max, ttft_q, tpot_q, e2e_q, queue_q, hosts, shape_hist, prompt_hist)
SELECT toDateTime({{start}} + intDiv(number, {{d}}) * 60, 'UTC'), 'sim',
    concat('dep-', toString(number % {{d}})),
    'meta-llama/Llama-3.1-70B-Instruct', 'vllm', 60, 0, 60 * 800, 0, 60 * 300, 6.0, 24.0, 18.0, 540.0, 570.0,
    60, 12.0,
    (SELECT quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(0.2 + number / 1000) FROM numbers(60)),
    (SELECT quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(0.03 + number / 100000) FROM numbers(60)),
    (SELECT quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(9.5 + number / 100) FROM numbers(60)),
    (SELECT quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(0.1) FROM numbers(60)),
    (SELECT uniqState(toString(number)) FROM numbers(2)),
    ([toUInt16(9 * 16 + 8)], [toUInt64(60)], [570.0], [540.0]),
    ([toUInt16(9)], [toUInt64(60)], [24.0], [toUInt64(0)])
FROM numbers({{d}} * {{minutes}})
WHERE NOT {_IDLE.format(gpu="number % {d} * 8", minute="intDiv(number, {d})", start="{start}")}
""",
    "engine_minute": """
INSERT INTO engine_minute (minute, cluster, deployment, host, instance, metric, le, engine,
    value_min, value_max, value_sum, n)
SELECT toDateTime({start} + intDiv(number, {i} * 3) * 60, 'UTC'), 'sim',
    concat('dep-', toString(intDiv(intDiv(number % ({i} * 3), 3), 2))),
    concat('host-', toString(intDiv(intDiv(number % ({i} * 3), 3), 2))),
    concat('pod-', toString(intDiv(number % ({i} * 3), 3))),
    ['requests_running', 'kv_cache_usage', 'preemptions'][number % 3 + 1], 0, 'vllm',
    [4.0, 0.6, toFloat64(intDiv(number, {i} * 3) * 4)][number % 3 + 1],
    [4.0, 0.6, toFloat64(intDiv(number, {i} * 3) * 4 + 3)][number % 3 + 1],
    [48.0, 7.2, toFloat64(intDiv(number, {i} * 3) * 48 + 18)][number % 3 + 1], 12
FROM numbers({i} * 3 * {minutes})
""",
}

FINDINGS_ROLLUPS = (
    "findings_gpu_hour",
    "findings_fleet_5m",
    "findings_deployment_hour",
    "findings_deployment_day",
    "findings_engine_hour",
)
READS_FINDINGS = re.compile(r"\bFROM\s+(?:\w+\.)?findings_")
VIEWS = Query(
    "bench.views",
    "SELECT name, as_select, create_table_query AS ddl FROM system.tables "
    "WHERE database = currentDatabase() AND engine = 'MaterializedView' ORDER BY name",
)


@contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    if VERBOSE:
        print(f"  {what}: {time.perf_counter() - started:.1f} s", flush=True)


def fill(store: Store, gpus: int, start: int, minutes: int, *, merge_minutes: bool) -> dict[str, int]:
    """The minute rollups from numbers(), then the findings rollups by their views' own
    SELECT. Views are detached meanwhile, so other rollups stay empty. Every table the
    findings read is merged (OPTIMIZE FINAL), the minute rollups only when `merge_minutes`
    (they are read only by the minute-rollup comparison)."""
    values = {
        "g": gpus,
        "d": gpus // GPUS_PER_DEPLOYMENT,
        "i": gpus // GPUS_PER_REPLICA,
        "start": start,
        "minutes": minutes,
    }
    views = store.rows(VIEWS)
    for view in {v["name"] for v in views}:
        store.execute(Query("bench.detach", f"DETACH TABLE {view}"))
    for table, sql in FILL.items():
        with timed(f"fill {table}"):
            store.execute(Query(f"bench.fill.{table}", sql.format(**values)))
    # Views on the minute rollups first: the daily view reads what the hourly one wrote.
    findings_views = [v for v in views if v["name"].startswith("findings_")]
    findings_views.sort(key=lambda v: bool(READS_FINDINGS.search(v["as_select"])))
    for view in findings_views:
        target = view["ddl"].split(" TO ", 1)[1].split()[0].split(".")[-1]
        select = view["as_select"]
        columns = ", ".join(r["name"] for r in store.rows(Query("bench.describe", f"DESCRIBE ({select})")))
        with timed(f"backfill {target} ({view['name']})"):
            store.execute(
                Query(f"bench.backfill.{view['name']}", f"INSERT INTO {target} ({columns}) {select}")
            )
    for view in {v["name"] for v in views}:
        store.execute(Query("bench.attach", f"ATTACH TABLE {view}"))
    rows = {}
    for table in (*FILL, *FINDINGS_ROLLUPS):
        if merge_minutes or table in FINDINGS_ROLLUPS:
            with timed(f"merge {table}"):
                store.execute(Query("bench.optimize", f"OPTIMIZE TABLE {table} FINAL"))
        rows[table] = int(store.scalar(Query("bench.count", f"SELECT count() FROM {table}")))
    return rows


def backdate_hourly_rollups(store: Store, before: datetime) -> None:
    """Record the hourly-rollup migration as run at `before`: the simulated fleet has been
    watched since then, so every whole hour of the window is in the hourly rollups."""
    store.execute(
        Query(
            "bench.backdate",
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES ({version:UInt32}, 'findings', 'bench', {at:DateTime64(6)})",
        ),
        version=ROLLUPS_MIGRATION,
        at=before,
    )


@dataclass(frozen=True, slots=True)
class Run:
    wall: float
    cpu: float
    queries: dict[str, float]
    compute: float
    findings: int

    @property
    def query_sum(self) -> float:
        """The queries' times added up: more than their share of the wall time, since the
        findings run two at a time (the store's two connections)."""
        return sum(self.queries.values())


def measure(store: Store, settings: Settings, window: Window, runs: int, times: dict[str, list[float]], *,
            minute_only: bool = False) -> list[Run]:  # fmt: skip
    """`runs` runs of load_inputs + compute_findings."""
    spans = split(window, None) if minute_only else None
    out = []
    for _ in range(runs):
        times.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        inputs = load_inputs(store, settings, window, spans=spans)
        computed = time.perf_counter()
        findings = compute_findings(inputs, settings, window)
        done = time.perf_counter()
        queries = {name: sum(values) for name, values in times.items()}
        out.append(Run(done - wall, time.process_time() - cpu, queries, done - computed, len(findings)))
    return out


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main(argv: list[str] | None = None) -> int:
    global VERBOSE
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--verbose", action="store_true", help="print how long each fill step took")
    args = parser.parse_args(argv)
    VERBOSE = args.verbose
    window = align(Window(datetime.now(UTC) - timedelta(days=DAYS), datetime.now(UTC)))
    first = floor_hour(window.start)
    minutes = int((window.end - first).total_seconds() // 60)
    print(f"machine: {machine()}")
    print(
        f"findings over {DAYS} days to {window.end:%Y-%m-%d %H:%M} UTC, SIMULATED rollups "
        f"(INSERT … SELECT FROM numbers(), 1 s sampling shape), median of {args.runs} runs"
    )
    times: dict[str, list[float]] = defaultdict(list)

    def observe(name: str, seconds: float, ok: bool) -> None:
        if name.startswith("findings."):
            times[name].append(seconds)

    results: list[Result] = []
    base = args.gpus[0]
    with tempfile.TemporaryDirectory() as tmp:
        for gpus in args.gpus:
            settings = Settings(data_dir=Path(tmp), clickhouse_database=f"bench_{gpus}")
            store = Store(
                ChdbTransport(Path(tmp) / "ch", settings.clickhouse_database, query_timeout_s=600),
                observer=observe,
            )
            migrate(store, settings)
            started = time.perf_counter()
            baseline = gpus <= MINUTE_ONLY_MAX_GPUS
            rows = fill(store, gpus, int(first.timestamp()), minutes, merge_minutes=baseline)
            backdate_hourly_rollups(store, first - timedelta(days=1))
            print(
                f"\n{gpus} GPUs: filled in {time.perf_counter() - started:.0f} s: "
                + ", ".join(f"{table} {n:,}" for table, n in rows.items()),
                flush=True,
            )
            size = f"{gpus // base}× ({gpus} GPUs)"
            load = os.getloadavg()[0]
            runs = measure(store, settings, window, args.runs, times)
            total_ms = median_ms([r.wall for r in runs])
            results.append(
                Result(
                    "findings",
                    f"all findings, {size}",
                    total_ms,
                    "ms",
                    "<= 2000 at 256",
                    f"CPU {median_ms([r.cpu for r in runs]):.0f} ms; load {load:.1f}; "
                    f"{runs[0].findings} findings; "
                    "runs " + " ".join(f"{r.wall * 1000:.0f}" for r in runs),
                )
            )
            for name in sorted(runs[0].queries):
                results.append(
                    Result(
                        "findings",
                        f"  query {name}, {size}",
                        median_ms([r.queries[name] for r in runs]),
                        "ms",
                    )
                )
            results.append(
                Result(
                    "findings",
                    f"  queries added up (two run at once), {size}",
                    median_ms([r.query_sum for r in runs]),
                    "ms",
                )
            )
            results.append(
                Result("findings", f"  finding functions, {size}", median_ms([r.compute for r in runs]), "ms")
            )
            if baseline:
                load = os.getloadavg()[0]
                slow = measure(store, settings, window, max(3, args.runs // 2), times, minute_only=True)
                wall = median_ms([r.wall for r in slow])
                results.append(
                    Result(
                        "findings",
                        f"  baseline: minute rollups only, {size}",
                        wall,
                        "ms",
                        note=f"{wall / total_ms:.1f}× the time; load {load:.1f}; {slow[0].findings} findings",
                    )
                )
            print_table(f"findings, {size}", [r for r in results if size in r.case])
            store.execute(Query("bench.drop", f"DROP DATABASE {settings.clickhouse_database} SYNC"))
            store.close()
    print_table(f"findings over {DAYS} days, by fleet size", results)
    save("findings", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
