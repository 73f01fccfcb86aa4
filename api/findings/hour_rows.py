"""The hourly GPU rollup's rows over a window (`api.store.sql.fleet.GPU_HOUR_ROWS`), read
once and shared by the overview's two halves: the fleet's GPU-hours
(`api.routes.fleet_rows.merge`) and the findings' (`api.findings.gpu_hours`) over nearly the
same window. Reading the rollup is the costliest step of each; one read in that shape costs
a little more than either read alone, so it pays only where both halves need it.

The fleet half decides: computing its GPU-hours (nothing kept for the window) it claims the
rows (`HourRows.table`), or it settles without them (`HourRows.settle`). The findings half
waits for that (`HourRows.claimed`) and reads the rows only if they were claimed, else its
own grouped query. `as_gpu_hours` turns the rows into that query's shape, so the findings merge
them exactly as they merge the minute rollups' rows.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from api.findings.columns import Segments, numbers, present
from api.findings.gpu_hours import MASKS, SUMS
from api.store import Store
from api.store.sql.fleet import GPU_HOUR_ROWS

_COLUMNS = [
    "cluster",
    "host",
    "gpu_uuid",
    "hour_s",
    "gpu_model",
    "gpu_deployment",
    "request_deployment",
    "gpm",
    "mem_used_peak",
    "mem_total_peak",
    *MASKS,
    *SUMS,
]
"""What the findings read of GPU_HOUR_ROWS: `as_gpu_hours` hands the masks and sums on
under the names `gpu_hours` reads, so both use its lists."""


def _hour(t: datetime) -> int:
    """The start of `t`'s hour, epoch seconds."""
    return int(t.timestamp()) // 3600 * 3600


class HourRows:
    """GPU_HOUR_ROWS over [start's hour, end), read by the first call to `table` (the other
    callers wait for it). Thread-safe."""

    def __init__(
        self, store: Store, start: datetime, end: datetime, *, idle_pct: float, held_mib: int
    ) -> None:
        self.store = store
        self.start, self.end = start, end
        self.idle_pct, self.held_mib = idle_pct, held_mib
        self._lock = threading.Lock()
        self._table: pa.Table | None = None
        self._claimed = False
        self._settled = threading.Event()

    def settle(self) -> None:
        """No more claims: `claimed` answers from now on (call it whatever happens, or a
        `claimed` caller waits forever)."""
        self._settled.set()

    def claimed(self) -> bool:
        """Whether the rows are (being) read, once the claimer settled."""
        self._settled.wait()
        return self._claimed

    def covers(self, start: datetime, end: datetime, *, idle_pct: float, held_mib: int) -> bool:
        """Whether these rows hold every row of the hours [start, end) (both whole hours, or
        `start` cut to its hour as here) at these thresholds."""
        return (
            _hour(self.start) <= _hour(start)
            and end <= self.end
            and (idle_pct, held_mib) == (self.idle_pct, self.held_mib)
        )

    def table(self) -> pa.Table:
        """The rows: read now, claimed, unless read already (then as they were read)."""
        self._claimed = True
        self._settled.set()
        with self._lock:
            if self._table is None:
                self._table = self.store.arrow(
                    GPU_HOUR_ROWS,
                    start=self.start,
                    end=self.end,
                    idle_pct=self.idle_pct,
                    held_mib=self.held_mib,
                )
            return self._table

    def between(self, start: datetime, end: datetime) -> pa.Table:
        """The rows of the hours from `start`'s hour up to `end`: the query's own range
        with another window (use `covers` first)."""
        table = self.table()
        if _hour(start) <= _hour(self.start) and end >= self.end:
            return table
        # Hours are whole seconds: `hour < end` is `hour < ceil(end)`.
        hour = pc.cast(table["hour_s"], pa.int64())
        last = math.ceil(end.timestamp())
        return table.filter(pc.and_(pc.greater_equal(hour, _hour(start)), pc.less(hour, last)))


def _list(offsets: pa.Array, values: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    flat = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pa.ListArray.from_arrays(offsets, flat)


def _codes(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string column (plain or dictionary) as codes (int64) into its distinct values."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    codes = np.asarray(column.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, np.asarray(column.dictionary.cast(pa.string()).to_pylist(), dtype=object)


def _greatest(column: pa.Array, order: np.ndarray, runs: Segments) -> pa.Array:
    """Per run of the rows in `order`, the greatest of their strings (as SQL `max`)."""
    codes, values = _codes(column)
    by_value = np.argsort(values.astype(str), kind="stable")
    rank = np.empty(len(by_value), dtype=np.int64)
    rank[by_value] = np.arange(len(by_value))
    return pa.array(values[by_value[runs.max(rank[codes[order]])]].tolist(), pa.string())


def as_gpu_hours(table: pa.Table, start: datetime, end: datetime) -> pa.Table:
    """GPU_HOUR_ROWS' rows of the hours [start's hour, end) in the shape of
    `findings.gpu_hours`: one row per (cluster, host, gpu_uuid), its hours, deployments and
    minute masks as arrays in the order the rows came in, its sums added, its name and
    requests' deployment the greatest, its peaks the highest (NULL where no row had one)."""
    # Hours are whole seconds: `hour < end` is `hour < ceil(end)`.
    hour = numbers([table], "hour_s", np.int64)
    inside = np.flatnonzero((hour >= _hour(start)) & (hour < math.ceil(end.timestamp())))
    if not inside.size:
        return pa.table({})
    table = table.select(_COLUMNS).unify_dictionaries().combine_chunks()
    idents = [_codes(table[c].chunk(0)) for c in ("cluster", "host", "gpu_uuid")]
    gpu_key = np.zeros(table.num_rows, dtype=np.int64)
    for codes, names in idents:
        gpu_key = gpu_key * max(1, len(names)) + codes
    order = inside[np.argsort(gpu_key[inside], kind="stable")]
    runs = Segments.of(gpu_key[order])
    first = order[runs.starts]
    offsets = pa.array(np.r_[runs.starts, len(order)].astype(np.int32))
    take = pa.array(order)

    def column(name: str) -> pa.Array:
        return table[name].chunk(0)

    def listed(name: str) -> pa.ListArray:
        return _list(offsets, column(name).take(take))

    def values(name: str, dtype: type) -> np.ndarray:
        return numbers([table], name, dtype)[order]

    out: dict[str, pa.Array] = {
        name: pa.array(names[codes[first]].tolist(), pa.string())
        for name, (codes, names) in zip(("cluster", "host", "gpu_uuid"), idents, strict=True)
    }
    out["gpu_name"] = _greatest(column("gpu_model"), order, runs)
    out["requests_for"] = _greatest(column("request_deployment"), order, runs)
    out["hours"] = listed("hour_s")
    out["deployments"] = listed("gpu_deployment")
    for m in MASKS:
        out[f"{m}_minutes"] = listed(m)
    for s in SUMS:
        out[f"{s}_sum"] = pa.array(runs.sum(values(s, np.float64)))
    out["gpm_seen"] = pa.array(runs.max(values("gpm", np.int64)).astype(np.uint8))
    for name, peak_name in (("mem_used_peak", "mem_used_peak_bytes"), ("mem_total_peak", "mem_total_bytes")):
        peak = runs.max(np.where(present([table], name)[order], values(name, np.int64), -1))
        out[peak_name] = pa.array(np.maximum(peak, 0).astype(np.uint64), mask=peak < 0)
    return pa.table(out)
