"""Storage per GPU metric value, and GPU-sample insert speed.

Realistic 1 Hz GPU telemetry for a fleet — utilisation following a diurnal load with
bursts, power and clocks tracking it with sensor noise, memory mostly flat, a slowly
warming temperature, a monotonic energy counter read every 5 s, NVML GPM fields on Hopper
— inserted as columnar batches into `gpu_samples`, merged, then measured from
ClickHouse's `system.parts` / `system.columns`. Bytes per value = every byte of the table
(timestamps and keys included) over the number of metric values stored.

Run: python -m bench.storage [--gpus N] [--hours H]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from api.ingest.metrics import GPU_SCHEMA
from bench.common import Result, machine, pin_one_core, print_table, save
from bench.ingest import open_bench_store

METRIC_COLUMNS = (
    "util_gpu_pct",
    "util_mem_pct",
    "mem_used_bytes",
    "mem_total_bytes",
    "power_mw",
    "power_limit_mw",
    "energy_mj",
    "sm_clock_mhz",
    "temperature_c",
    "sm_activity_pct",
    "sm_occupancy_pct",
    "dram_bw_pct",
    "tensor_active_pct",
)


def gpu_day(rng: np.random.Generator, gpu: int, seconds: int, t0: int) -> dict[str, np.ndarray]:
    """One GPU's samples: a load curve with noise, and fields that follow it."""
    t = np.arange(seconds)
    hour = (t0 + t) / 3600 % 24
    diurnal = 0.5 + 0.45 * np.sin((hour - 8) / 24 * 2 * np.pi)
    # Requests come in bursts: a smoothed random walk of demand on top of the daily curve.
    walk = np.cumsum(rng.normal(0, 0.02, seconds))
    walk = (walk - walk.min()) / (np.ptp(walk) + 1e-9)
    load = np.clip(diurnal * 0.7 + walk * 0.3 + rng.normal(0, 0.05, seconds), 0, 1)
    idle = (hour >= 1) & (hour < 7) & (gpu % 3 == 0)
    load[idle] = 0
    util = np.where(load > 0.02, np.clip(load * 100 + rng.normal(0, 3, seconds), 0, 100), 0).round()
    sm_activity = np.clip(load * 80 + rng.normal(0, 2, seconds), 0, 100) * (load > 0.02)
    power = (70_000 + load * 550_000 + rng.normal(0, 4_000, seconds)).astype(np.uint32)
    clock = np.where(load > 0.02, 1980 - (load * 200).round() // 15 * 15, 345).astype(np.uint16)
    temp = (35 + np.convolve(load, np.ones(300) / 300, mode="same") * 40).round().astype(np.uint8)
    energy = (np.cumsum(power.astype(np.uint64)) + 10**9).astype(np.uint64)
    mem_used = np.full(seconds, 71 * 2**30 if gpu % 7 else 2**29, dtype=np.uint64)
    mem_used += (rng.integers(0, 4, seconds) * 2**21).astype(np.uint64)
    return {
        "util_gpu_pct": util.astype(np.uint8),
        "util_mem_pct": np.clip(util * 0.45 + rng.normal(0, 1, seconds), 0, 100).round().astype(np.uint8),
        "mem_used_bytes": mem_used,
        "mem_total_bytes": np.full(seconds, 80 * 2**30, dtype=np.uint64),
        "power_mw": power,
        "power_limit_mw": np.full(seconds, 700_000, dtype=np.uint32),
        "energy_mj": energy,
        "sm_clock_mhz": clock,
        "temperature_c": temp,
        # GPM reports doubles; the server keeps whole percent (api/ingest/metrics.py).
        "sm_activity_pct": sm_activity.round().astype(np.uint8),
        "sm_occupancy_pct": (sm_activity * 0.4 + rng.normal(0, 1, seconds))
        .clip(0, 100)
        .round()
        .astype(np.uint8),
        "dram_bw_pct": (load * 60 + rng.normal(0, 2, seconds)).clip(0, 100).round().astype(np.uint8),
        "tensor_active_pct": (sm_activity * 0.6).round().astype(np.uint8),
    }


def table_for(rng: np.random.Generator, gpus: int, seconds: int, t0: int) -> pa.Table:
    parts = []
    for gpu in range(gpus):
        cols = gpu_day(rng, gpu, seconds, t0)
        energy = pa.array(cols.pop("energy_mj"), type=pa.uint64())
        # The collector reads the energy counter every 5 s (it costs ms per read).
        energy = pa.array(
            np.where(np.arange(seconds) % 5 == 0, energy, 0),
            type=pa.uint64(),
            mask=np.arange(seconds) % 5 != 0,
        )
        n = seconds
        data = {
            "time": pa.array((t0 + np.arange(n)) * 1000, type=pa.timestamp("ms", tz="UTC")),
            "cluster": pa.array(["prod"] * n),
            "host": pa.array([f"node-{gpu // 8:03d}"] * n),
            "gpu_uuid": pa.array([f"GPU-{gpu:08x}-aaaa-bbbb-cccc-{gpu:012x}"] * n),
            "gpu_index": pa.array(np.full(n, gpu % 8, dtype=np.uint16)),
            "gpu_name": pa.array(["NVIDIA H100 80GB HBM3"] * n),
            "deployment": pa.array([f"deploy-{gpu // 32}"] * n),
            **{k: pa.array(v) for k, v in cols.items()},
            "energy_mj": energy,
            "proc_pids": pa.array([[4242]] * n, type=pa.list_(pa.uint32())),
            "proc_mem_bytes": pa.array([[71 * 2**30]] * n, type=pa.list_(pa.uint64())),
            "proc_sm_pct": pa.array([[0]] * n, type=pa.list_(pa.uint8())),
        }
        parts.append(pa.table(data).select(GPU_SCHEMA.names).cast(GPU_SCHEMA))
    return pa.concat_tables(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args(argv)
    pinned = pin_one_core()
    print(f"machine: {machine()}; {pinned}")
    from api.store.gateway import Query

    rng = np.random.default_rng(11)
    seconds = int(args.hours * 3600)
    t0 = int(time.time()) - 86400 * 2
    chunk = 600  # seconds of the whole fleet per insert: ~38k rows for 64 GPUs
    tables = [table_for(rng, args.gpus, chunk, t0 + start) for start in range(0, seconds, chunk)]
    rows = sum(t.num_rows for t in tables)
    with tempfile.TemporaryDirectory() as tmp:
        store, _ = open_bench_store(Path(tmp), "bench_storage")
        store.insert("gpu_samples", tables[0])  # the first insert into fresh tables is slower: untimed
        started = time.perf_counter()
        for table in tables[1:]:
            store.insert("gpu_samples", table)
        insert_s = time.perf_counter() - started
        timed_rows = rows - tables[0].num_rows
        store.execute(Query("bench.optimize", "OPTIMIZE TABLE gpu_samples FINAL"))
        cols = store.rows(
            Query(
                "bench.columns",
                "SELECT name, sum(data_compressed_bytes) AS compressed, sum(data_uncompressed_bytes) AS raw "
                "FROM system.columns WHERE database = currentDatabase() AND table = 'gpu_samples' "
                "GROUP BY name",
            )
        )
        parts = store.rows(
            Query(
                "bench.parts",
                "SELECT sum(bytes_on_disk) AS disk, sum(rows) AS rows FROM system.parts "
                "WHERE database = currentDatabase() AND table = 'gpu_samples' AND active",
            )
        )[0]
        store.close()
    values = rows * len(METRIC_COLUMNS)
    per_value_disk = parts["disk"] / values
    per_col = {c["name"]: c["compressed"] / rows for c in cols}
    results = [
        Result(
            "storage",
            "bytes per GPU metric value (on disk, all columns)",
            per_value_disk,
            "bytes",
            "<= 1.0",
            f"{rows:,} rows × {len(METRIC_COLUMNS)} values, {args.gpus} GPUs × {args.hours:g} h at 1 Hz",
        ),
        Result(
            "storage",
            "GPU sample rows inserted (columnar, store only)",
            timed_rows / insert_s,
            "rows/s",
            ">= 500,000",
            f"batches of {tables[0].num_rows:,} rows, views attached; 1×/4×/16× in bench.ingest",
        ),
    ]
    print_table("GPU sample storage", results)
    print("\nbytes per row by column (compressed):")
    for name, b in sorted(per_col.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<20} {b:8.3f}")
    save("storage", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
