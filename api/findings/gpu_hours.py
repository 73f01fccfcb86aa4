"""From per-GPU rows with per-hour minute masks (`findings.gpu_hours`, `findings.gpu_minutes`)
and per-deployment 5-minute rows (`findings.fleet_5m`, `findings.fleet_minutes`) to what
the finding functions read: `GpuUsage` per GPU, `FleetSeries` and arrival rates per
deployment, the requests in flight on hosts whose spans named no GPU, and the GPU-hours the
cost model prices. Pure: Arrow tables in, dataclasses out, vectorised with numpy (30 days
of 256 GPUs is 184 thousand GPU-hours).

A mask holds one bit per minute of the hour (bit m = minute m). A GPU-minute is idle when
it was measured, not busy (peak utilisation below the idle threshold), and no request was
in flight on the GPU, nor on its host from spans that named no GPU, nor did the engine's
busy clock advance on the host: rows with gpu_uuid = '' carry those host-wide minutes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from api.findings.columns import Labels, Segments, key, lengths, numbers, popcount, present
from api.findings.inputs import FleetSeries, GpuUsage, IdleStreak
from api.findings.unit_cost import GpuHours
from api.timewindow import Window

Key = tuple[str, str]  # (cluster, deployment)
MINUTES = 60
CELLS = 7 * 24
MASKS = ("reported", "measured", "busy", "held", "inflight", "engine_busy")
SUMS = (
    "util_total",
    "util_count",
    "busy_util_total",
    "busy_util_count",
    "busy_dram_total",
    "busy_dram_count",
    "busy_mem_util_total",
    "busy_mem_util_count",
    "inflight_s",
)


@dataclass(frozen=True, slots=True)
class GpuRows:
    """The query rows, one GPU (or host, gpu_uuid = '') per index `g`, and their hours:
    one row per GPU and hour, sorted by GPU, then hour."""

    cluster: list[str]
    host: list[str]
    gpu_uuid: list[str]
    gpu_name: list[str]
    requests_for: list[str]
    sums: dict[str, np.ndarray]
    gpm: np.ndarray
    peaks: dict[str, list[int | None]]
    # per GPU-hour
    gpu: np.ndarray
    hour: np.ndarray  # hours since the epoch
    deployment: Labels
    masks: dict[str, np.ndarray]

    @staticmethod
    def of(tables: Sequence[pa.Table]) -> GpuRows:
        """Rows of one GPU from several results (the hourly and the minute rollups) are
        joined, and hours of one GPU given twice (rollup rows not merged yet, or an hour
        read from both) merged."""
        tables = [t for t in tables if t.num_rows]
        idents = [Labels.of(tables, c) for c in ("cluster", "host", "gpu_uuid")]
        unique, gpu_of_row = np.unique(key(*idents), return_inverse=True)
        count = len(unique)
        first_row = np.zeros(count, dtype=np.int64)
        first_row[gpu_of_row[::-1]] = np.arange(len(gpu_of_row))[::-1]
        # GPUs in (cluster, host, gpu_uuid) order, whatever order the query returned them in.
        names = [tuple(label.text(r) for label in idents) for r in first_row.tolist()]
        by_name = sorted(range(count), key=names.__getitem__)
        rank = np.empty(count, dtype=np.int64)
        rank[by_name] = np.arange(count)
        gpu_of_row, first_row = rank[gpu_of_row], first_row[by_name]

        def per_gpu_sum(values: np.ndarray) -> np.ndarray:
            return np.bincount(gpu_of_row, weights=values, minlength=count)

        def per_gpu_text(name: str) -> list[str]:
            label, out = Labels.of(tables, name), [""] * count
            for row, g in enumerate(gpu_of_row.tolist()):
                out[g] = max(out[g], label.text(row))
            return out

        peaks: dict[str, list[int | None]] = {}
        for name in ("mem_used_peak_bytes", "mem_total_bytes"):
            values, seen = numbers(tables, name, np.int64), present(tables, name)
            peak = np.full(count, -1, dtype=np.int64)
            np.maximum.at(peak, gpu_of_row, np.where(seen, values, -1))
            peaks[name] = [int(p) if p >= 0 else None for p in peak.tolist()]
        gpm = np.zeros(count, dtype=np.int64)
        np.maximum.at(gpm, gpu_of_row, numbers(tables, "gpm_seen", np.int64))

        gpu = np.repeat(gpu_of_row, lengths(tables, "hours"))
        hour = numbers(tables, "hours", np.int64) // 3600
        # Usually already in (GPU, hour) order: then the (stable) sort is the identity.
        in_order = gpu.size < 2 or bool(
            np.all((gpu[1:] > gpu[:-1]) | ((gpu[1:] == gpu[:-1]) & (hour[1:] >= hour[:-1])))
        )
        order = np.arange(gpu.size) if in_order else np.lexsort((hour, gpu))
        runs = Segments.of(gpu[order], hour[order])
        deployment = Labels.of(tables, "deployments").take(order)

        def merge(masks: np.ndarray) -> np.ndarray:
            """The masks of each GPU-hour ORed (a merged rollup has one row per GPU-hour)."""
            return masks if runs.count == masks.size else runs.any_bits(masks)

        reported = numbers(tables, "reported_minutes", np.uint64)[order]
        return GpuRows(
            cluster=[idents[0].text(r) for r in first_row.tolist()],
            host=[idents[1].text(r) for r in first_row.tolist()],
            gpu_uuid=[idents[2].text(r) for r in first_row.tolist()],
            gpu_name=per_gpu_text("gpu_name"),
            requests_for=per_gpu_text("requests_for"),
            sums={s: per_gpu_sum(numbers(tables, f"{s}_sum", np.float64)) for s in SUMS},
            gpm=gpm,
            peaks=peaks,
            gpu=gpu[order][runs.starts],
            hour=hour[order][runs.starts],
            deployment=runs.last_nonblank(deployment, reported != 0),
            masks={m: merge(numbers(tables, f"{m}_minutes", np.uint64)[order]) for m in MASKS},
        )

    @property
    def gpus(self) -> int:
        return len(self.cluster)


@dataclass(frozen=True, slots=True)
class HostInflight:
    """Requests in flight on a host from spans that named no GPU."""

    cluster: str
    host: str
    deployment: str
    busy_s: float
    minutes: int

    def as_row(self) -> dict[str, Any]:
        """In the shape `api.findings.facts.deployments` reads."""
        return {
            "cluster": self.cluster,
            "host": self.host,
            "deployment_name": self.deployment,
            "busy_total": self.busy_s,
            "minutes_in_flight": self.minutes,
        }


@dataclass(frozen=True, slots=True)
class GpuFacts:
    gpus: list[GpuUsage]
    hosts: list[HostInflight]
    cost: list[GpuHours]
    rows: GpuRows | None


def gpu_facts(tables: Sequence[pa.Table], *, tz: str, streak_min: int) -> GpuFacts:
    """Per GPU over the window, from its rows."""
    if not any(t.num_rows for t in tables):
        return GpuFacts([], [], [], None)
    rows = GpuRows.of(tables)
    is_host = np.array([u == "" for u in rows.gpu_uuid], dtype=bool)
    host_of = {(c, h): i for i, (c, h) in enumerate(sorted(set(zip(rows.cluster, rows.host, strict=True))))}
    host_code = np.array([host_of[(c, h)] for c, h in zip(rows.cluster, rows.host, strict=True)], np.int64)
    m = rows.masks
    hour_key = host_code[rows.gpu] << 32 | rows.hour
    from_host = is_host[rows.gpu]
    busy_elsewhere = np.zeros(len(rows.hour), dtype=np.uint64)
    if from_host.any():
        keys, wide = hour_key[from_host], (m["inflight"] | m["engine_busy"])[from_host]
        order = np.argsort(keys)
        keys, wide = keys[order], wide[order]
        at = np.searchsorted(keys, hour_key).clip(max=len(keys) - 1)
        busy_elsewhere = np.where(keys[at] == hour_key, wide[at], busy_elsewhere)
    idle = m["measured"] & ~m["busy"] & ~m["inflight"] & ~busy_elsewhere
    idle[from_host] = 0
    usage, cost = _per_gpu(rows, idle, ~is_host, tz=tz, streak_min=streak_min)
    return GpuFacts(usage, _hosts(rows, is_host), cost, rows)


def _per_gpu(
    rows: GpuRows, idle: np.ndarray, is_gpu: np.ndarray, *, tz: str, streak_min: int
) -> tuple[list[GpuUsage], list[GpuHours]]:
    m, s, n = rows.masks, rows.sums, rows.gpus

    def per_gpu(values: np.ndarray) -> np.ndarray:
        return np.bincount(rows.gpu, weights=values, minlength=n)

    reported = per_gpu(popcount(m["reported"]))
    measured_n, idle_n = popcount(m["measured"]), popcount(idle)
    minutes, idle_total = per_gpu(measured_n), per_gpu(idle_n)
    held_total = per_gpu(popcount(idle & m["held"]))
    inflight_n = per_gpu(popcount(m["inflight"]))
    # The GPU's deployment: from its last hour with telemetry (hours are sorted).
    last_hour = np.full(n, -1, dtype=np.int64)
    telemetry = np.flatnonzero((m["reported"] != 0) & ~rows.deployment.blank)
    last_hour[rows.gpu[telemetry]] = telemetry
    util_mean = _ratio(s["util_total"], s["util_count"])
    busy_util = _ratio(s["busy_util_total"], s["busy_util_count"])
    busy_dram = _ratio(s["busy_dram_total"], s["busy_dram_count"])
    busy_mem_util = _ratio(s["busy_mem_util_total"], s["busy_mem_util_count"])

    cells = _cells_of(rows.hour, tz)
    idle_cells = _per_gpu_cells(rows.gpu * CELLS + cells, idle_n, n)
    reported_cells = _per_gpu_cells(rows.gpu * CELLS + cells, measured_n, n)
    # streak_min = 0: no streaks wanted (GPU-hours for cost): the longest step here.
    streaks = _streaks(idle, rows.hour, rows.gpu, streak_min) if streak_min > 0 else {}

    usage, cost = [], []
    for g in np.flatnonzero(is_gpu & (reported > 0)).tolist():  # GPUs only requests named: not watched
        ident = {"cluster": rows.cluster[g], "host": rows.host[g], "gpu_uuid": rows.gpu_uuid[g]}
        deployment = rows.deployment.text(int(last_hour[g])) if last_hour[g] >= 0 else ""
        usage.append(
            GpuUsage(
                **ident,
                gpu_name=rows.gpu_name[g],
                deployment=deployment,
                minutes=int(minutes[g]),
                idle_minutes=int(idle_total[g]),
                idle_held_minutes=int(held_total[g]),
                streaks=streaks.get(g, ()),
                idle_cells=idle_cells[g],
                reported_cells=reported_cells[g],
                mem_used_peak_bytes=rows.peaks["mem_used_peak_bytes"][g],
                mem_total_bytes=rows.peaks["mem_total_bytes"][g],
                util_mean_pct=_finite(util_mean[g]),
                util_busy_mean_pct=_finite(busy_util[g]),
                dram_bw_busy_mean_pct=_finite(busy_dram[g]) if rows.gpm[g] else None,
                mem_util_busy_mean_pct=_finite(busy_mem_util[g]),
                has_gpm=bool(rows.gpm[g]),
                inflight_minutes=int(inflight_n[g]),
                inflight_busy_s=float(s["inflight_s"][g]),
            )
        )
        cost.append(
            GpuHours(
                **ident,
                gpu_name=rows.gpu_name[g],
                deployment=deployment,
                minutes=int(reported[g]),
                util_mean_pct=_finite(util_mean[g]),
            )
        )
    return usage, cost


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@lru_cache(maxsize=16_384)
def _cell(hour_no: int, tz: str) -> int:
    local = datetime.fromtimestamp(hour_no * 3600, tz=UTC).astimezone(ZoneInfo(tz))
    return local.weekday() * 24 + local.hour


def _cells_of(hours: np.ndarray, tz: str) -> np.ndarray:
    """Weekday × 24 + hour in `tz` (weekday 0 = Monday) of each UTC hour number. A zone
    with a half-hour offset files each UTC hour under the local hour it starts in."""
    if not hours.size:
        return np.zeros(0, dtype=np.int64)
    low, high = int(hours.min()), int(hours.max())
    if high - low >= hours.size:  # sparse hours: look up each distinct one
        unique, inverse = np.unique(hours, return_inverse=True)
        return np.array([_cell(int(h), tz) for h in unique], dtype=np.int64)[inverse]
    return np.array([_cell(h, tz) for h in range(low, high + 1)], dtype=np.int64)[hours - low]


def _per_gpu_cells(flat: np.ndarray, counts: np.ndarray, gpus: int) -> list[Mapping[int, int]]:
    table = np.bincount(flat, weights=counts, minlength=gpus * CELLS).reshape(gpus, CELLS)
    gpu, cell = np.nonzero(table)
    bounds = np.searchsorted(gpu, np.arange(gpus + 1)).tolist()
    cells, values = cell.tolist(), table[gpu, cell].astype(np.int64).tolist()
    return [dict(zip(cells[a:b], values[a:b], strict=True)) for a, b in pairwise(bounds)]


_HOUR_BITS = np.uint64((1 << MINUTES) - 1)


def _has_run(masks: np.ndarray, n: int) -> np.ndarray:
    """Where a mask holds `n` consecutive set bits (bit i stays set while bits i … i + have - 1
    all are; each step doubles `have` at most)."""
    if n > MINUTES:
        return np.zeros(masks.size, dtype=bool)
    have = 1
    while have < n:
        step = min(have, n - have)
        masks = masks & (masks >> np.uint64(step))
        have += step
    return masks != 0


def _bit_length(masks: np.ndarray) -> np.ndarray:
    for shift in (1, 2, 4, 8, 16, 32):
        masks = masks | (masks >> np.uint64(shift))
    return np.bitwise_count(masks).astype(np.int64)


def _could_streak(idle: np.ndarray, joined: np.ndarray, streak_min: int) -> np.ndarray:
    """Which hours (nonzero idle masks, in GPU and hour order; `joined[i]`: hour i follows
    hour i - 1 of the same GPU) may hold part of a run of `streak_min` idle minutes: one
    with such a run inside the hour, or on either side of an hour boundary that such a run
    may cross (its minutes on both sides add up to `streak_min`, or one of the two hours is
    idle throughout and the run may go on). Leaving the other hours out changes no long run:
    every hour of one is kept, and the runs that lose a neighbour were short and only get
    shorter."""
    masks = idle & _HOUR_BITS
    full = masks == _HOUR_BITS
    last_run = MINUTES - _bit_length(~masks & _HOUR_BITS)  # idle minutes up to minute 59
    first_run = np.bitwise_count(masks ^ (masks + np.uint64(1))).astype(np.int64) - 1  # from minute 0
    crossing = joined[1:] & (last_run[:-1] > 0) & (first_run[1:] > 0)
    crossing &= (last_run[:-1] + first_run[1:] >= streak_min) | full[:-1] | full[1:]
    keep = _has_run(masks, streak_min)
    keep[:-1] |= crossing
    keep[1:] |= crossing
    return keep


def _streaks(
    idle: np.ndarray, hour: np.ndarray, gpu: np.ndarray, streak_min: int
) -> dict[int, tuple[IdleStreak, ...]]:
    """Runs of at least `streak_min` consecutive idle minutes, per GPU. A run goes on across
    an hour boundary only into the next hour of the same GPU. Only the hours that may hold
    part of such a run are unpacked into minutes (`_could_streak`)."""
    rows = np.flatnonzero(idle != 0)
    if rows.size == 0:
        return {}
    joined = np.zeros(rows.size, dtype=bool)  # row i goes on from row i - 1
    joined[1:] = (gpu[rows[1:]] == gpu[rows[:-1]]) & (hour[rows[1:]] == hour[rows[:-1]] + 1)
    rows = rows[_could_streak(idle[rows], joined, streak_min)]
    if rows.size == 0:
        return {}
    bits = np.unpackbits(idle[rows].astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    flat = bits[:, :MINUTES].astype(bool).ravel()
    joined = np.zeros(rows.size, dtype=bool)  # row i goes on from row i - 1
    joined[1:] = (gpu[rows[1:]] == gpu[rows[:-1]]) & (hour[rows[1:]] == hour[rows[:-1]] + 1)
    before = np.zeros_like(flat)
    before[1:] = flat[:-1]
    before[::MINUTES] &= joined
    after = np.zeros_like(flat)
    after[:-1] = flat[1:]
    after[MINUTES - 1 :: MINUTES] &= np.append(joined[1:], False)
    starts, ends = np.flatnonzero(flat & ~before), np.flatnonzero(flat & ~after)
    lengths_ = ends - starts + 1
    keep = lengths_ >= streak_min
    starts, lengths_ = starts[keep], lengths_[keep]
    at = rows[starts // MINUTES]
    begin = hour[at] * 3600 + (starts % MINUTES) * 60
    out: dict[int, list[IdleStreak]] = {}
    for g, t, n in zip(gpu[at].tolist(), begin.tolist(), lengths_.tolist(), strict=True):
        out.setdefault(g, []).append(IdleStreak(datetime.fromtimestamp(t, tz=UTC), n))
    return {g: tuple(v) for g, v in out.items()}


def _hosts(rows: GpuRows, is_host: np.ndarray) -> list[HostInflight]:
    minutes = np.bincount(rows.gpu, weights=popcount(rows.masks["inflight"]), minlength=rows.gpus)
    return [
        HostInflight(
            rows.cluster[g],
            rows.host[g],
            rows.requests_for[g],
            float(rows.sums["inflight_s"][g]),
            int(minutes[g]),
        )
        for g in np.flatnonzero(is_host & (minutes > 0)).tolist()
    ]


# --- fleet sizing and arrival rate, per deployment ---------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    """Requests per sizing bucket of one deployment, between its first and last bucket
    with requests (`api.findings.facts.traffic` reads these)."""

    buckets: int
    s1: float
    s2: float
    first: int
    last: int

    def as_fields(self) -> dict[str, Any]:
        return {
            "rate_buckets": self.buckets,
            "rate_s1": self.s1,
            "rate_s2": self.s2,
            "rate_first": self.first,
            "rate_last": self.last,
        }


@dataclass(frozen=True, slots=True)
class FleetFacts:
    series: dict[Key, FleetSeries]
    rates: dict[Key, Rate]


def fleet_facts(
    rows: GpuRows | None, buckets: Sequence[pa.Table], window: Window, bucket_minutes: int
) -> FleetFacts:
    """GPUs that reported (from the GPU-hour masks: each GPU once) and their summed
    utilisation (from the 5-minute rows) per deployment and sizing bucket, densely from
    the bucket holding the window start (0 where no GPU reported); and the requests per
    bucket."""
    size = bucket_minutes * 60
    first = int(window.start.timestamp()) // size * size
    count = max(1, math.ceil((window.end.timestamp() - first) / size))
    buckets = [t for t in buckets if t.num_rows]
    keys: dict[Key, int] = {}

    def codes(cluster: Labels, deployment: Labels) -> np.ndarray:
        """Codes shared by the GPU rows and the bucket rows: one per (cluster, deployment)."""
        pairs = [(str(c), str(d)) for c in cluster.values for d in deployment.values]
        lookup = np.array([keys.setdefault(p, len(keys)) for p in pairs], dtype=np.int64)
        return lookup[cluster.codes * max(1, len(deployment.values)) + deployment.codes]

    g_code = np.zeros(0, dtype=np.int64)
    if rows is not None:
        use = ~rows.deployment.blank & (rows.masks["reported"] != 0)
        use &= np.array([u != "" for u in rows.gpu_uuid], dtype=bool)[rows.gpu]
        clusters = Labels.of([pa.table({"c": pa.array(rows.cluster, pa.string())})], "c")
        g_code = codes(clusters.take(rows.gpu[use]), rows.deployment.take(np.flatnonzero(use)))
    b_code = codes(Labels.of(buckets, "cluster"), Labels.of(buckets, "deployment"))
    n = len(keys)

    flat_size = n * count
    flat_gpus = np.zeros(flat_size)
    if g_code.size and rows is not None:
        reported = rows.masks["reported"][use]
        base = (rows.hour[use] * 3600 - first) // size
        width = np.uint64((1 << bucket_minutes) - 1)
        for j in range(MINUTES // bucket_minutes):
            index = base + j
            present_ = ((reported >> np.uint64(bucket_minutes * j)) & width) != 0
            inside = (index >= 0) & (index < count) & present_
            flat_gpus += np.bincount(g_code[inside] * count + index[inside], minlength=flat_size)
    gpus = flat_gpus.reshape(n, count)

    b_index = (numbers(buckets, "buckets", np.int64) - first) // size
    b_code = np.repeat(b_code, lengths(buckets, "buckets"))
    b_inside = (b_index >= 0) & (b_index < count)
    at_code, at_index = b_code[b_inside], b_index[b_inside]
    total = _dense(at_code, at_index, numbers(buckets, "util_totals", np.float64)[b_inside], n, count)
    samples = _dense(at_code, at_index, numbers(buckets, "util_counts", np.float64)[b_inside], n, count)
    requests = _dense(at_code, at_index, numbers(buckets, "requests", np.float64)[b_inside], n, count)
    busy = np.where(samples > 0, _ratio(total, samples) / 100 * gpus, 0.0)

    with_gpus = set(np.unique(g_code).tolist())
    series = {k: FleetSeries(bucket_minutes, gpus[c], busy[c]) for k, c in keys.items() if c in with_gpus}
    rates = {}
    for k, c in keys.items():
        active = np.flatnonzero(requests[c] > 0)
        if active.size:
            r = requests[c]
            rates[k] = Rate(
                buckets=int(active.size),
                s1=float(r.sum()),
                s2=float((r * r).sum()),
                first=first + int(active[0]) * size,
                last=first + int(active[-1]) * size,
            )
    return FleetFacts(series, rates)


def _dense(code: np.ndarray, index: np.ndarray, values: np.ndarray, n: int, count: int) -> np.ndarray:
    flat = np.bincount(code * count + index, weights=values, minlength=n * count)
    return flat.reshape(n, count)
