"""GPU-hours merged from the hourly rollup's rows (`api.routes.fleet_rows`), against
answers counted by hand: unmerged rows of one GPU-hour, a host's in-flight minutes, the
window cut at the minute, the deployment of each GPU-hour."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from api.routes.fleet_rows import by_deployment, merge, window_masks

H0 = 1_700_000_000 // 3600 * 3600
H1 = H0 + 3600
ALL = (1 << 60) - 1


def bits(first: int, last: int) -> int:
    """Minutes first..last (inclusive) of an hour as a mask."""
    return sum(1 << m for m in range(first, last + 1))


def rows(*given: dict) -> pa.Table:
    defaults = {
        "cluster": "c",
        "reported": 0,
        "procs": 0,
        "inflight": 0,
        "busy": 0,
        "gpu_idx": 0,
        "gpu_model": "",
        "gpu_deployment": "",
        "util_total": 0.0,
        "util_count": 0,
        "util_peak": 0.0,
        "power_total_mw": 0,
        "power_count": 0,
        "mem_used_peak": None,
        "mem_total_peak": None,
    }
    full = [defaults | r for r in given]
    types = {
        "hour_s": pa.uint32(),
        "reported": pa.uint64(),
        "procs": pa.uint64(),
        "inflight": pa.uint64(),
        "busy": pa.uint64(),
        "gpu_idx": pa.uint16(),
        "util_count": pa.uint64(),
        "util_peak": pa.float32(),
        "power_total_mw": pa.uint64(),
        "power_count": pa.uint64(),
        "mem_used_peak": pa.uint64(),
        "mem_total_peak": pa.uint64(),
    }
    return pa.table({k: pa.array([r[k] for r in full], type=types.get(k)) for k in full[0]})


TABLE = rows(
    # GPU g1, first hour, in two unmerged rows: telemetry (busy minutes 0-39, a process all
    # hour) and requests (in flight in minutes 40-44).
    {
        "host": "h1", "gpu_uuid": "g1", "hour_s": H0, "reported": ALL, "busy": bits(0, 39), "procs": ALL,
        "gpu_idx": 1, "gpu_model": "H100", "gpu_deployment": "chat", "util_total": 100.0, "util_count": 10,
        "util_peak": 50.0, "power_total_mw": 1000, "power_count": 10, "mem_used_peak": 5_000_000_000,
        "mem_total_peak": 80_000_000_000,
    },
    {
        "host": "h1", "gpu_uuid": "g1", "hour_s": H0, "inflight": bits(40, 44), "util_total": 20.0,
        "util_count": 2,
    },
    # Requests on host h1 that named no GPU: minutes 50 and 51.
    {"host": "h1", "gpu_uuid": "", "hour_s": H0, "inflight": bits(50, 51)},
    # g1's second hour: idle all hour, moved to `batch`, no process.
    {
        "host": "h1", "gpu_uuid": "g1", "hour_s": H1, "reported": ALL, "gpu_model": "H100",
        "gpu_deployment": "batch",
    },
    # g2 reported only before the window began.
    {"host": "h2", "gpu_uuid": "g2", "hour_s": H0, "reported": bits(0, 29), "gpu_model": "L4"},
)  # fmt: skip
T0, T1 = H0 + 30 * 60, H1 + 3600


def test_the_window_mask_keeps_the_minutes_inside_the_window() -> None:
    masks = window_masks(np.array([H0, H1, H1 + 3600]), T0, H1 + 10 * 60 + 1)
    assert masks.tolist() == [bits(30, 59), bits(0, 10), 0]


def test_rows_of_one_gpu_hour_merge_before_minutes_are_counted() -> None:
    h = merge(TABLE, T0, T1)
    assert [h.keys[g] for g in h.gpu] == [("c", "h1", "g1"), ("c", "h1", "g1")]  # g2: nothing in the window
    assert h.hour.tolist() == [H0, H1]
    assert h.minutes.tolist() == [30, 60]
    # First hour, minutes 30-59: busy until 39, in flight on the GPU 40-44 and on its host 50-51.
    assert h.idle_minutes.tolist() == [5 + 8, 60]
    assert h.idle_held_minutes.tolist() == [13, 0]
    assert h.util_sum.tolist() == [120.0, 0.0] and h.util_n.tolist() == [12.0, 0.0]
    assert [h.deployments[d] for d in h.deployment] == ["chat", "batch"]
    assert [h.gpu_names[n] for n in h.gpu_name] == ["H100", "H100"]
    assert h.gpu_index.tolist() == [1, 0]
    assert h.mem_used_max[0] == 5e9 and np.isnan(h.mem_used_max[1])


def test_only_the_gpu_hours_of_the_deployment_asked_for_are_kept() -> None:
    h = merge(TABLE, T0, T1, deployment="chat")
    assert h.hour.tolist() == [H0] and h.minutes.tolist() == [30]
    assert len(merge(TABLE, T0, T1, deployment="nope")) == 0


def test_gpu_time_is_priced_per_deployment() -> None:
    prices = {("H100", "h1"): 3.0}
    lines = by_deployment(merge(TABLE, T0, T1), lambda name, host: prices[(name, host)])
    assert {k: (v.gpus, v.hours, v.usd) for k, v in lines.items()} == {
        ("c", "chat"): (1, 0.5, 1.5),
        ("c", "batch"): (1, 1.0, 3.0),
    }


def test_no_rows_make_no_gpu_hours() -> None:
    empty = TABLE.slice(0, 0)
    h = merge(empty, T0, T1)
    assert len(h) == 0 and h.keys == []
    assert by_deployment(h, lambda name, host: 1.0) == {}
