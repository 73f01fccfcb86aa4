"""GPU-hours from the hourly rollup's rows (`api.store.sql.fleet.GPU_ROWS`), merged and
counted in numpy. Pure: no I/O.

The rollup may hold one GPU-hour in several rows (its views write separately, merges come
later): masks are ORed and sums added per GPU-hour before any minute is counted, so a
minute is counted once. A GPU-minute is idle when it reported, did not reach the idle
threshold (`busy`, chosen in the query) and no request was in flight on the GPU or, for
requests that named no GPU, on its host (the host's rows, gpu_uuid = ''). The first and
last hour of the window are cut at the minute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_MASKS = ("reported", "busy", "inflight", "procs")


@dataclass(frozen=True, slots=True)
class GpuHours:
    """One entry per GPU-hour with a reported minute in the window (and, when asked, on
    the deployment asked for), in (GPU, hour) order. `gpu` indexes `keys`."""

    keys: list[tuple[str, str, str]]
    """(cluster, host, gpu_uuid) of each GPU."""
    gpu: np.ndarray
    hour: np.ndarray
    """Start of the hour, epoch seconds."""
    minutes: np.ndarray
    idle_minutes: np.ndarray
    idle_held_minutes: np.ndarray
    util_sum: np.ndarray
    util_n: np.ndarray
    util_max: np.ndarray
    power_sum_mw: np.ndarray
    power_n: np.ndarray
    mem_used_max: np.ndarray
    """Bytes; NaN where no row had a value (as `mem_total`)."""
    mem_total: np.ndarray
    gpu_index: np.ndarray
    gpu_name: np.ndarray
    """Per entry: the GPU-hour's name and deployment (the greatest of its rows', as SQL max),
    as positions in `gpu_names` and `deployments`."""
    gpu_names: list[str]
    deployment: np.ndarray
    deployments: list[str]

    def __len__(self) -> int:
        return len(self.gpu)


def window_masks(hours: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """For each hour (epoch seconds), the bits of its minutes inside [t0, t1)."""
    first = np.clip((t0 - hours + 59) // 60, 0, 60).astype(np.uint64)
    end = np.clip((t1 - hours + 59) // 60, 0, 60).astype(np.uint64)
    return np.left_shift(_ALL, first) & (np.left_shift(np.uint64(1), end) - np.uint64(1))


def _strings(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """Codes (int64) and the distinct strings they index, in sorted order: the codes, and so
    the order of the GPUs, do not depend on the order the rows came in."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    codes = np.asarray(arr.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    names = [str(v) for v in arr.dictionary.to_pylist()]
    rank, order = _ranks(names)
    return rank[codes] if names else codes, [names[i] for i in order.tolist()]


def _numbers(table: pa.Table, name: str, dtype: type = np.float64) -> np.ndarray:
    """A numeric column; nulls as NaN (floats only)."""
    column = table[name].combine_chunks()
    if column.null_count:
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


class _Groups:
    """Rows grouped by an integer key, by one sort: reductions per group in key order. Rows
    that come in key order are not sorted again, and groups of one row are not reduced
    (a merged rollup holds one row per GPU-hour)."""

    def __init__(self, keys: np.ndarray) -> None:
        in_order = len(keys) < 2 or bool(np.all(keys[1:] >= keys[:-1]))
        self.order: np.ndarray | None = None if in_order else np.argsort(keys, kind="stable")
        ordered = keys if self.order is None else keys[self.order]
        self.starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(keys) else keys[:0]
        self.keys = ordered[self.starts]
        self._single = len(self.starts) == len(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def reduce(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        if not len(self.keys):
            return values[:0]
        ordered = values.copy() if self.order is None else values[self.order]
        return ordered if self._single else ufunc.reduceat(ordered, self.starts)


def _ranks(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each string's rank in sorted order, and the code of each rank (SQL `max` on codes)."""
    order = np.argsort(np.array(names, dtype=object), kind="stable") if names else np.zeros(0, np.int64)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    return rank, order


def merge(table: pa.Table, t0: int, t1: int, *, deployment: str = "") -> GpuHours:
    """The GPU-hours of GPU_ROWS' result over the window [t0, t1) (epoch seconds)."""
    table = table.unify_dictionaries() if table.num_rows else table
    cluster, cluster_names = _strings(table["cluster"])
    host, host_names = _strings(table["host"])
    uuid, uuid_names = _strings(table["gpu_uuid"])
    hour = _numbers(table, "hour_s", np.int64)
    n_hosts, n_uuids = max(1, len(host_names)), max(1, len(uuid_names))
    host_key = cluster * n_hosts + host
    blank = np.array([u == "" for u in uuid_names] or [False])
    is_host = blank[uuid] if len(uuid) else np.zeros(0, dtype=bool)
    first_hour = int(hour.min()) if len(hour) else 0
    slot = (hour - first_hour) // 3600
    n_slots = int(slot.max()) + 1 if len(slot) else 1
    masks = {m: _numbers(table, m, np.uint64) for m in _MASKS}

    # The host rows: in-flight minutes per (host, hour).
    by_host = _Groups(host_key[is_host] * n_slots + slot[is_host])
    host_inflight = by_host.reduce(np.bitwise_or, masks["inflight"][is_host])

    # The GPU rows, merged per GPU-hour (GPU: cluster, host and uuid codes in one integer).
    g = ~is_host
    gpu_key = host_key[g] * n_uuids + uuid[g]
    by_gpu_hour = _Groups(gpu_key * n_slots + slot[g])
    merged = {m: by_gpu_hour.reduce(np.bitwise_or, masks[m][g]) for m in _MASKS}

    def total(name: str) -> np.ndarray:
        return by_gpu_hour.reduce(np.add, _numbers(table, name)[g])

    def peak(name: str, dtype: type = np.float64) -> np.ndarray:
        return by_gpu_hour.reduce(np.fmax, _numbers(table, name, dtype)[g])

    def greatest(column: str) -> tuple[np.ndarray, list[str]]:
        codes, names = _strings(table[column])
        rank, code_of = _ranks(names)
        return code_of[by_gpu_hour.reduce(np.maximum, rank[codes[g]])] if names else codes[:0], names

    gpu_hour_keys = by_gpu_hour.keys
    gpu_keys, gpu = np.unique(gpu_hour_keys // n_slots, return_inverse=True)
    hours = (gpu_hour_keys % n_slots) * 3600 + first_hour
    want = (gpu_hour_keys // n_slots // n_uuids) * n_slots + gpu_hour_keys % n_slots
    host_busy = np.zeros(len(gpu_hour_keys), dtype=np.uint64)
    if len(by_host):
        pos = np.minimum(np.searchsorted(by_host.keys, want), len(by_host) - 1)
        host_busy = np.where(by_host.keys[pos] == want, host_inflight[pos], np.uint64(0))

    seen = merged["reported"] & window_masks(hours, t0, t1)
    idle = seen & ~(merged["busy"] | merged["inflight"] | host_busy)
    model, model_names = greatest("gpu_model")
    dep, dep_names = greatest("gpu_deployment")
    keep = np.bitwise_count(seen) > 0
    if deployment:
        keep &= np.isin(dep, [i for i, d in enumerate(dep_names) if d == deployment])
    kept = np.flatnonzero(keep)
    keys = [
        (cluster_names[k // n_uuids // n_hosts], host_names[k // n_uuids % n_hosts], uuid_names[k % n_uuids])
        for k in gpu_keys.tolist()
    ]
    return GpuHours(
        keys=keys,
        gpu=gpu[kept],
        hour=hours[kept],
        minutes=np.bitwise_count(seen[kept]).astype(np.int64),
        idle_minutes=np.bitwise_count(idle[kept]).astype(np.int64),
        idle_held_minutes=np.bitwise_count((idle & merged["procs"])[kept]).astype(np.int64),
        util_sum=np.nan_to_num(total("util_total"))[kept],
        util_n=total("util_count")[kept],
        util_max=np.nan_to_num(peak("util_peak"))[kept],
        power_sum_mw=total("power_total_mw")[kept],
        power_n=total("power_count")[kept],
        mem_used_max=peak("mem_used_peak")[kept],
        mem_total=peak("mem_total_peak")[kept],
        gpu_index=peak("gpu_idx", np.int64)[kept],
        gpu_name=model[kept],
        gpu_names=model_names,
        deployment=dep[kept],
        deployments=dep_names,
    )


@dataclass(frozen=True, slots=True)
class DeploymentGpus:
    """GPU time of one deployment: distinct GPUs (per GPU name they reported), hours, and
    the GPU-hours at their price."""

    gpus: int
    hours: float
    usd: float


def by_deployment(h: GpuHours, price: Callable[[str, str], float]) -> dict[tuple[str, str], DeploymentGpus]:
    """GPU time per (cluster, deployment) from each GPU-hour's deployment; `price(gpu_name,
    host)` per hour. GPU-hours with no deployment are left out."""
    if not len(h.gpu) or not h.deployments:
        return {}
    n_names = max(1, len(h.gpu_names))
    combo = (h.deployment * len(h.keys) + h.gpu) * n_names + h.gpu_name
    combos, at = np.unique(combo, return_inverse=True)
    minutes = np.bincount(at, weights=h.minutes, minlength=len(combos))
    out: dict[tuple[str, str], DeploymentGpus] = {}
    for key, mins in zip(combos.tolist(), minutes.tolist(), strict=True):
        dep = h.deployments[key // n_names // len(h.keys)]
        if not dep:
            continue
        cluster, host, _ = h.keys[key // n_names % len(h.keys)]
        name = h.gpu_names[key % n_names] if h.gpu_names else ""
        old = out.get((cluster, dep)) or DeploymentGpus(0, 0.0, 0.0)
        hours = mins / 60
        out[(cluster, dep)] = DeploymentGpus(
            old.gpus + 1, old.hours + hours, old.usd + hours * price(name, host)
        )
    return out
