"""From rollup rows to finding inputs, on hand-built rows (api/findings/spans.py,
gpu_hours.py, engine_hours.py): which rollup answers which part of a window, how minute
masks become idle minutes, streaks and fleet series, and how counters are summed across
segments. Answers worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from api.findings.engine_hours import engine_stats
from api.findings.gpu_hours import fleet_facts, gpu_facts
from api.findings.spans import align, split
from api.timewindow import Window

T0 = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday, 00:00 UTC
H = 3600


def minutes(*spans: tuple[int, int]) -> int:
    """A minute mask with the minutes [a, b) of each span set."""
    mask = 0
    for a, b in spans:
        for m in range(a, b):
            mask |= 1 << m
    return mask


ALL = minutes((0, 60))

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
MASKS = ("reported", "measured", "busy", "held", "inflight", "engine_busy")


def gpu_rows(*hours: dict[str, Any]) -> pa.Table:
    """Rows shaped like findings.gpu_hours from GPU-hours given one by one: `hour` (hours
    after T0), the masks and the sums of that hour; identity defaults to c / h1 / g1."""
    by_gpu: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for h in hours:
        ident = (h.get("cluster", "c"), h.get("host", "h1"), h.get("gpu_uuid", "g1"))
        by_gpu.setdefault(ident, []).append(h)
    out: dict[str, list[Any]] = {
        name: [] for name in ("cluster", "host", "gpu_uuid", "gpu_name", "requests_for")
    }
    for name in ("hours", "deployments", *(f"{m}_minutes" for m in MASKS), *(f"{s}_sum" for s in SUMS)):
        out[name] = []
    out |= {"gpm_seen": [], "mem_used_peak_bytes": [], "mem_total_bytes": []}
    for (cluster, host, uuid), rows in by_gpu.items():
        out["cluster"].append(cluster)
        out["host"].append(host)
        out["gpu_uuid"].append(uuid)
        out["gpu_name"].append("" if not uuid else "NVIDIA H100 80GB HBM3")
        out["requests_for"].append(max(r.get("requests_for", "") for r in rows))
        out["hours"].append([int(T0.timestamp()) + r["hour"] * H for r in rows])
        out["deployments"].append([r.get("deployment", "chat" if uuid else "") for r in rows])
        for m in MASKS:
            out[f"{m}_minutes"].append([r.get(m, 0) for r in rows])
        for s in SUMS:
            out[f"{s}_sum"].append(float(sum(r.get(s, 0.0) for r in rows)))
        out["gpm_seen"].append(max(r.get("gpm", 0) for r in rows))
        for p in ("mem_used_peak", "mem_total_peak"):
            seen = [r[p] for r in rows if r.get(p) is not None]
            out[f"{p}_bytes" if p == "mem_used_peak" else "mem_total_bytes"].append(
                max(seen) if seen else None
            )
    types = {"hours": pa.list_(pa.uint32()), "deployments": pa.list_(pa.string()), "gpm_seen": pa.uint8()}
    types |= {f"{m}_minutes": pa.list_(pa.uint64()) for m in MASKS}
    types |= {"mem_used_peak_bytes": pa.uint64(), "mem_total_bytes": pa.uint64()}
    return pa.table({name: pa.array(values, types.get(name)) for name, values in out.items()})


# --- which rollup answers which part ---------------------------------------------------------------


def test_a_window_of_a_day_or_more_is_cut_to_whole_hours_and_a_shorter_one_to_minutes() -> None:
    long = align(Window(T0 + timedelta(minutes=37, seconds=5), T0 + timedelta(days=7, minutes=37, seconds=5)))
    assert long == Window(T0, T0 + timedelta(days=7))
    short = align(
        Window(T0 + timedelta(minutes=7, seconds=30), T0 + timedelta(hours=6, minutes=7, seconds=30))
    )
    assert short == Window(T0 + timedelta(minutes=7), T0 + timedelta(hours=6, minutes=7))


def test_whole_days_and_hours_come_from_the_coarse_rollups_the_rest_from_minutes() -> None:
    window = Window(T0 + timedelta(hours=22, minutes=30), T0 + timedelta(days=3, hours=1, minutes=15))
    spans = split(window, rollups_since=T0 - timedelta(days=30))
    assert spans.head == Window(window.start, T0 + timedelta(hours=23))
    assert spans.hours == Window(T0 + timedelta(hours=23), T0 + timedelta(days=3, hours=1))
    assert spans.days == Window(T0 + timedelta(days=1), T0 + timedelta(days=3))
    assert spans.tail == Window(T0 + timedelta(days=3, hours=1), window.end)
    p = spans.params()
    assert (p["hour_head_from"], p["hour_head_to"]) == (T0 + timedelta(hours=23), T0 + timedelta(days=1))
    assert (p["hour_tail_from"], p["hour_tail_to"]) == (
        T0 + timedelta(days=3),
        T0 + timedelta(days=3, hours=1),
    )


def test_hours_before_the_rollups_existed_come_from_the_minute_rollups() -> None:
    window = Window(T0, T0 + timedelta(days=2))
    # The migration ran at 10:20 on the first day: that hour is incomplete, 11:00 is the first whole one.
    spans = split(window, rollups_since=T0 + timedelta(hours=10, minutes=20))
    assert spans.head == Window(T0, T0 + timedelta(hours=11))
    assert spans.hours == Window(T0 + timedelta(hours=11), window.end)
    assert spans.days == Window(T0 + timedelta(days=1), window.end)
    assert spans.has_minutes and spans.tail.start == spans.tail.end
    assert split(window, rollups_since=None).head == window
    assert split(window, rollups_since=None).minutes_only


# --- GPU-hour rows ----------------------------------------------------------------------------------


def test_idle_minutes_leave_out_busy_minutes_requests_on_the_gpu_and_on_its_host() -> None:
    rows = gpu_rows(
        # 60 measured minutes: 0–9 busy, a request on the GPU 10–19, one on the host 20–24,
        # the engine's busy clock 25–29: 30 idle minutes, 10 of them (50–59) with memory held.
        {"hour": 0, "reported": ALL, "measured": ALL, "busy": minutes((0, 10)), "inflight": minutes((10, 20)),
         "held": minutes((50, 60)), "inflight_s": 300.0},
        {"hour": 0, "gpu_uuid": "", "inflight": minutes((20, 25)), "requests_for": "chat",
         "inflight_s": 150.0},
        {"hour": 0, "gpu_uuid": "", "engine_busy": minutes((25, 30))},
        # Another host's requests do not count.
        {"hour": 0, "host": "h2", "gpu_uuid": "", "inflight": ALL},
    )  # fmt: skip
    facts = gpu_facts([rows], tz="UTC", streak_min=60)
    (gpu,) = facts.gpus
    assert (gpu.minutes, gpu.idle_minutes, gpu.idle_held_minutes) == (60, 30, 10)
    assert (gpu.inflight_minutes, gpu.inflight_busy_s) == (10, 300.0)
    assert {(h.host, h.deployment, h.minutes, h.busy_s) for h in facts.hosts} == {
        ("h1", "chat", 5, 150.0),
        ("h2", "", 60, 0.0),
    }


def test_unmerged_rows_of_one_hour_count_each_minute_once() -> None:
    # The same minutes 0–29 in two rows (two inserts), busy in one of them: busy.
    rows = gpu_rows(
        {"hour": 0, "reported": minutes((0, 30)), "measured": minutes((0, 30)),
         "util_total": 100.0, "util_count": 10},
        {"hour": 0, "reported": minutes((0, 30)), "measured": minutes((0, 30)), "busy": minutes((0, 15)),
         "util_total": 500.0, "util_count": 10},
    )  # fmt: skip
    (gpu,) = gpu_facts([rows], tz="UTC", streak_min=60).gpus
    assert (gpu.minutes, gpu.idle_minutes) == (30, 15)
    assert gpu.util_mean_pct == pytest.approx(30.0)


def test_a_streak_runs_across_hour_boundaries_only_into_the_next_hour() -> None:
    rows = gpu_rows(
        # Idle 00:40–02:20 (100 minutes), then idle again 04:00–04:30 after a gap with no rows.
        {"hour": 0, "reported": ALL, "measured": ALL, "busy": minutes((0, 40))},
        {"hour": 1, "reported": ALL, "measured": ALL},
        {"hour": 2, "reported": ALL, "measured": ALL, "busy": minutes((20, 60))},
        {"hour": 4, "reported": ALL, "measured": ALL, "busy": minutes((30, 60))},
        {"hour": 5, "reported": ALL, "measured": ALL, "busy": ALL},
    )  # fmt: skip
    (gpu,) = gpu_facts([rows], tz="UTC", streak_min=30).gpus
    assert [(s.start, s.minutes) for s in gpu.streaks] == [
        (T0 + timedelta(minutes=40), 100),
        (T0 + timedelta(hours=4), 30),
    ]
    assert gpu_facts([rows], tz="UTC", streak_min=31).gpus[0].streaks[0].minutes == 100
    # Monday 00:00 UTC is cell 0; 20 idle minutes in hour 0, 60 in hour 1, 20 in hour 2, 30 in hour 4.
    assert gpu.idle_cells == {0: 20, 1: 60, 2: 20, 4: 30}
    assert gpu.reported_cells == {0: 60, 1: 60, 2: 60, 4: 60, 5: 60}
    # In New York (UTC-5 in November) Monday 00:00 UTC is Sunday 19:00: cell 6 × 24 + 19.
    assert gpu_facts([rows], tz="America/New_York", streak_min=30).gpus[0].idle_cells[6 * 24 + 19] == 20


def test_a_gpu_only_named_by_requests_is_not_reported() -> None:
    rows = gpu_rows(
        {"hour": 0, "reported": ALL, "measured": ALL},
        {"hour": 0, "gpu_uuid": "g-elsewhere", "inflight": ALL, "inflight_s": 60.0},
    )
    assert [g.gpu_uuid for g in gpu_facts([rows], tz="UTC", streak_min=60).gpus] == ["g1"]


def test_while_busy_means_and_peaks_come_from_the_busy_sums() -> None:
    rows = gpu_rows(
        {"hour": 0, "reported": ALL, "measured": ALL, "util_total": 3000.0, "util_count": 100,
         "busy_util_total": 2800.0, "busy_util_count": 40, "busy_dram_total": 1200.0, "busy_dram_count": 40,
         "gpm": 1, "mem_used_peak": 70_000_000_000, "mem_total_peak": 80_000_000_000},
        {"hour": 1, "reported": ALL, "measured": ALL, "util_total": 0.0, "util_count": 100,
         "mem_used_peak": 60_000_000_000},
    )  # fmt: skip
    (gpu,) = gpu_facts([rows], tz="UTC", streak_min=60).gpus
    assert gpu.util_mean_pct == pytest.approx(3000 / 200)
    assert gpu.util_busy_mean_pct == pytest.approx(70.0)
    assert gpu.dram_bw_busy_mean_pct == pytest.approx(30.0)
    assert gpu.mem_util_busy_mean_pct is None  # no NVML memory utilisation reported
    assert (gpu.mem_used_peak_bytes, gpu.mem_total_bytes, gpu.has_gpm) == (
        70_000_000_000,
        80_000_000_000,
        True,
    )


def fleet_rows(*rows: tuple[str, int, float, float, int]) -> pa.Table:
    """Rows shaped like findings.fleet_5m from (deployment, minutes after T0, util_total,
    util_count, requests) per 5-minute bucket."""
    by_dep: dict[str, list[tuple[int, float, float, int]]] = {}
    for dep, minute, total, count, requests in rows:
        by_dep.setdefault(dep, []).append((int(T0.timestamp()) + minute * 60, total, count, requests))
    deps = list(by_dep)
    return pa.table(
        {
            "cluster": pa.array(["c"] * len(deps), pa.string()),
            "deployment": pa.array(deps, pa.string()),
            "buckets": pa.array([[b[0] for b in by_dep[d]] for d in deps], pa.list_(pa.uint32())),
            "util_totals": pa.array([[b[1] for b in by_dep[d]] for d in deps], pa.list_(pa.float64())),
            "util_counts": pa.array([[b[2] for b in by_dep[d]] for d in deps], pa.list_(pa.float64())),
            "requests": pa.array([[b[3] for b in by_dep[d]] for d in deps], pa.list_(pa.uint64())),
        }
    )


def test_fleet_series_count_each_gpu_once_per_bucket_and_sum_its_utilisation() -> None:
    gpus = gpu_rows(
        # g1 reports all hour; g2 only 00:00–00:07 (two rows for minute 0–4: one GPU, counted once).
        {"hour": 0, "reported": ALL, "measured": ALL},
        {"hour": 0, "gpu_uuid": "g2", "reported": minutes((0, 5)), "measured": minutes((0, 5))},
        {"hour": 0, "gpu_uuid": "g2", "reported": minutes((0, 8)), "measured": minutes((0, 8))},
        {"hour": 0, "gpu_uuid": "g3", "deployment": "", "reported": ALL},  # no deployment: not sized
    )
    buckets = fleet_rows(
        ("chat", 0, 6000.0, 100.0, 30), ("chat", 5, 3000.0, 100.0, 0), ("chat", 10, 0.0, 60.0, 10)
    )
    window = Window(T0, T0 + timedelta(minutes=30))
    rows = gpu_facts([gpus], tz="UTC", streak_min=60).rows
    fleet = fleet_facts(rows, [buckets], window, bucket_minutes=5)
    series = fleet.series[("c", "chat")]
    assert series.gpus.tolist() == [2, 2, 1, 1, 1, 1]
    # busy GPUs = mean utilisation × GPUs: 60 % × 2, 30 % × 2, 0 % × 1, nothing reported after.
    assert series.busy_gpus.tolist() == pytest.approx([1.2, 0.6, 0.0, 0.0, 0.0, 0.0])
    rate = fleet.rates[("c", "chat")]
    first = int(T0.timestamp())
    assert (rate.buckets, rate.s1, rate.s2, rate.first, rate.last) == (2, 40.0, 1000.0, first, first + 600)
    # 10-minute buckets: the first holds 00:00–00:09 (both GPUs, 9000 / 200 = 45 % × 2).
    ten = fleet_facts(rows, [buckets], window, bucket_minutes=10).series[("c", "chat")]
    assert ten.gpus.tolist() == [2, 1, 1]
    assert ten.busy_gpus.tolist() == pytest.approx([0.9, 0.0, 0.0])


# --- engine segments ---------------------------------------------------------------------------------


SERIES = ("cluster", "deployment", "metric", "host", "instance")
SEGMENT = {
    "starts": ("segment_start", pa.uint32()),
    "minute_masks": ("minutes", pa.uint64()),
    "saturated_masks": ("saturated", pa.uint64()),
    "lows": ("lowest", pa.float64()),
    "highs": ("highest", pa.float64()),
    "first_ats": ("first_at", pa.uint32()),
    "first_values": ("first_value", pa.float64()),
    "last_ats": ("last_at", pa.uint32()),
    "last_values": ("last_value", pa.float64()),
}


def segment(metric: str, instance: str, hour: int, first: float, last: float, **more: Any) -> dict[str, Any]:
    start = int(T0.timestamp()) + hour * H
    row = {
        "cluster": "c", "deployment": "chat", "metric": metric, "host": "h1", "instance": instance,
        "segment_start": start, "minutes": ALL, "saturated": 0, "total": 0.0, "samples": 0,
        "lowest": min(first, last), "highest": max(first, last), "first_at": start, "first_value": first,
        "last_at": start + 59 * 60, "last_value": last,
    }  # fmt: skip
    return row | more


def engine_rows(*segments: dict[str, Any]) -> pa.Table:
    """Rows shaped like findings.engine_hours: one per instance and metric."""
    by_series: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for seg in segments:
        by_series.setdefault(tuple(seg[c] for c in SERIES), []).append(seg)
    columns: dict[str, pa.Array] = {
        c: pa.array([k[i] for k in by_series], pa.string()) for i, c in enumerate(SERIES)
    }
    for name, (field, kind) in SEGMENT.items():
        columns[name] = pa.array([[s[field] for s in segs] for segs in by_series.values()], pa.list_(kind))
    columns["value_total"] = pa.array(
        [sum(s["total"] for s in segs) for segs in by_series.values()], pa.float64()
    )
    columns["value_samples"] = pa.array(
        [sum(s["samples"] for s in segs) for segs in by_series.values()], pa.uint64()
    )
    return pa.table(columns)


def test_counter_increase_follows_resets_within_and_between_segments() -> None:
    rows = engine_rows(
        segment("preemptions", "pod-0", 0, 100, 160),  # +60
        # Reset inside hour 1: 160 → 190, restart at 0 → 25 (lowest 0 < first 160): +30 + 25.
        segment("preemptions", "pod-0", 1, 160, 25, lowest=0.0, highest=190.0),
        # Reset between hours: 25 → restarts, first value 5, then to 45: +5 + 40.
        segment("preemptions", "pod-0", 2, 5, 45),
        segment("preemptions", "pod-1", 0, 7, 10),  # another instance: +3
    )
    stats = engine_stats([rows])[("c", "chat")].get("preemptions")
    assert stats is not None
    assert stats.increase == pytest.approx(60 + 55 + 45 + 3)
    assert (stats.instances, stats.minutes) == (2, 4 * 60)


def test_unmerged_rows_of_one_segment_merge_and_gauges_average_over_scrapes() -> None:
    start = int(T0.timestamp())
    rows = engine_rows(
        # Two rows of hour 0 of one instance (two inserts): first at minute 0, last at minute 59.
        segment("kv_cache_usage", "pod-0", 0, 0.5, 0.6, minutes=minutes((0, 30)), saturated=minutes((10, 12)),
                total=30.0, samples=60, last_at=start + 29 * 60),
        segment("kv_cache_usage", "pod-0", 0, 0.7, 0.97, minutes=minutes((25, 60)),
                saturated=minutes((11, 14)),
                total=72.0, samples=80, first_at=start + 25 * 60),
        segment("kv_cache_usage", "pod-1", 0, 0.2, 0.2, total=12.0, samples=60),
    )  # fmt: skip
    stats = engine_stats([rows])[("c", "chat")].get("kv_cache_usage")
    assert stats is not None
    assert stats.mean == pytest.approx((30 + 72 + 12) / (60 + 80 + 60))
    assert stats.max == pytest.approx(0.97)
    assert (stats.minutes, stats.saturated, stats.instances) == (60 + 60, 4, 2)
    # The merged segment of pod-0 runs from its first value (0.5) to its last (0.97).
    assert stats.increase == pytest.approx(0.47 + 0.0)


def test_segments_of_hours_and_minutes_follow_each_other_in_time() -> None:
    start = int(T0.timestamp())
    minute_rows = engine_rows(
        segment("preemptions", "pod-0", 0, 40, 42, segment_start=start - 60, minutes=1 << 59,
                first_at=start - 60, last_at=start - 60),
    )  # fmt: skip
    hour_rows = engine_rows(segment("preemptions", "pod-0", 0, 42, 50))
    stats = engine_stats([hour_rows, minute_rows])[("c", "chat")].get("preemptions")
    assert stats is not None
    assert stats.increase == pytest.approx(2 + 0 + 8)
    assert np.isclose(stats.minutes, 61)
