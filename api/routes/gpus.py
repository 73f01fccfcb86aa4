"""`GET /api/v1/gpus`, `/api/v1/gpus/{uuid}` and `/api/v1/fleet`: every GPU over a window
with its hours, idle hours, utilisation and cost, the fleet's utilisation over time and its
idle pattern by hour of day and weekday.

The read functions here (`read_fleet`, `read_gpu`) are what the web pages render too, so a
page and its API call always show the same numbers. They read the hourly rollup's rows for
the totals and the pattern (`api/store/sql/fleet.py`, merged in `api/routes/fleet_rows.py`),
and the minute rollup only for series finer than an hour (windows of a day or less).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import get_store
from api.errors import NotFound
from api.findings.catalogue import PriceBook
from api.findings.hour_rows import HourRows
from api.routes.fleet_rows import GpuHours, merge
from api.routes.results import kept
from api.settings import Settings
from api.store import Store
from api.store.sql.fleet import GPU_INFLIGHT, GPU_MINUTE_SERIES, GPU_ROWS
from api.timewindow import Window, window_ending

router = APIRouter(tags=["fleet"])

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_STEPS = ((2 * 3600, 60), (12 * 3600, 300), (36 * 3600, 900), (8 * 86400, 3600), (400 * 86400, 21600))


def series_step_s(window: Window) -> int:
    """Seconds per chart point for a window: about 100–170 points, on round boundaries."""
    for longest, step in _STEPS:
        if window.seconds <= longest:
            return step
    return 86400


def configured_settings(request: Request) -> Settings:
    """Settings with the prices and deployments saved on the settings pages laid over."""
    settings: Settings = request.app.state.settings
    meta = getattr(request.app.state, "meta", None)
    if meta is None:
        return settings
    from api.meta.overlay import with_configured

    with meta.session() as session:
        return with_configured(settings, session)


MAX_POINTS = 500
_ROUND_STEPS = (60, 300, 900, 3600, 7200, 10800, 21600, 43200, 86400)


def gpu_step_s(window: Window) -> int:
    """Seconds per point of one GPU's series: finer than the fleet's (at most an hour), but
    no more than MAX_POINTS points, on round boundaries."""
    finest = max(min(series_step_s(window), 3600), -(-int(window.seconds) // MAX_POINTS))
    return next((s for s in _ROUND_STEPS if s >= finest), 86400)


def parse_window(window: str, end: datetime | None) -> Window:
    """The window ending at `end` (default now), both ends on whole minutes."""
    w = window_ending(window, end)
    return Window(w.start.replace(second=0, microsecond=0), w.end.replace(second=0, microsecond=0))


# --- response models ---------------------------------------------------------------------


class WindowOut(BaseModel):
    start: datetime = Field(description="Start of the window (UTC, inclusive)")
    end: datetime = Field(description="End of the window (UTC, exclusive)")
    step_s: int = Field(description="Seconds per point of every series")


class GpuOut(BaseModel):
    cluster: str
    host: str
    gpu_uuid: str = Field(description="NVML UUID, the key of a GPU")
    gpu_index: int = Field(description="NVML index on its host")
    gpu_name: str = Field(description="NVML product name")
    deployment: str = Field(description="Deployment the GPU served last in the window ('' for none)")
    hours: float = Field(description="Hours the GPU reported in the window (every one costs money)")
    idle_hours: float = Field(description="Hours below the idle threshold with no request in flight")
    idle_held_hours: float = Field(
        description="Idle hours in which a process held GPU memory (reserved but not computing)"
    )
    idle_share: float = Field(description="idle_hours / hours, 0–1")
    util_mean_pct: float | None = Field(description="Mean utilisation, % (SM activity where GPM reports it)")
    util_max_pct: float = Field(description="Busiest minute's utilisation, %")
    power_mean_w: float | None = Field(description="Mean power draw, watts")
    mem_used_max_bytes: int | None = Field(description="Most memory in use, bytes")
    mem_total_bytes: int | None = Field(description="Memory on the GPU, bytes")
    usd_per_hour: float = Field(description="Price per GPU-hour used (configured, else catalogue default)")
    cost_usd: float = Field(description="hours × usd_per_hour, dollars")
    idle_cost_usd: float = Field(description="idle_hours × usd_per_hour, dollars")
    last_seen: datetime = Field(description="Start of the last hour the GPU reported in")


class GpuPage(BaseModel):
    window: WindowOut
    total: int = Field(description="GPUs in the window, before paging")
    items: list[GpuOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


class FleetTotals(BaseModel):
    gpus: int = Field(description="GPUs that reported in the window")
    gpu_hours: float
    idle_gpu_hours: float
    idle_held_gpu_hours: float
    cost_usd: float = Field(description="Every reported GPU-hour at its price, dollars")
    idle_cost_usd: float = Field(description="Idle GPU-hours at their price, dollars")
    cost_usd_per_week: float = Field(description="cost_usd scaled to one week")
    util_mean_pct: float | None = Field(description="Mean utilisation over every reported GPU-minute, %")


class ModelLine(BaseModel):
    gpu_name: str
    gpus: int
    gpu_hours: float
    cost_usd: float
    idle_cost_usd: float


class UtilSeries(BaseModel):
    times: list[datetime] = Field(description="Start of each point (UTC)")
    mean_pct: list[float | None] = Field(description="Fleet mean utilisation per point, %")
    p10_pct: list[float | None] = Field(description="10th percentile across GPUs per point, %")
    p90_pct: list[float | None] = Field(description="90th percentile across GPUs per point, %")
    gpus: list[str] = Field(description="Row labels of `by_gpu` (host / index), in fleet order")
    gpu_uuids: list[str]
    by_gpu: list[list[float | None]] = Field(
        description="Mean utilisation, % — one row per GPU, one column per time"
    )


class IdlePattern(BaseModel):
    timezone: str = Field(description="Time zone of the hours (the findings' setting)")
    weekdays: list[str]
    hours: list[int]
    idle_gpus: list[list[float | None]] = Field(
        description="Mean idle GPUs in each weekday (row) × hour (column) slot; null where no data"
    )


class FleetOut(BaseModel):
    window: WindowOut
    idle_threshold_pct: float
    totals: FleetTotals
    by_model: list[ModelLine]
    utilisation: UtilSeries
    idle_pattern: IdlePattern


class GpuPoint(BaseModel):
    time: datetime
    util_mean_pct: float | None
    power_mean_w: float | None
    mem_used_max_bytes: int | None
    in_flight_mean: float | None = Field(description="Mean requests in flight on this GPU (from spans)")


class GpuDetailOut(BaseModel):
    window: WindowOut
    idle_threshold_pct: float
    gpu: GpuOut
    series: list[GpuPoint]
    idle_pattern: IdlePattern


# --- reading -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetData:
    """What one scan of the hourly rollup yields."""

    gpus: list[GpuOut]
    totals: FleetTotals
    by_model: list[ModelLine]
    idle_pattern: IdlePattern
    hours: GpuHours
    position: np.ndarray
    """For each GPU of `hours.keys`, its place in `gpus` (-1: not listed)."""


def _float(value: object) -> float | None:
    if value is None:
        return None
    f = float(value)  # type: ignore[arg-type]
    return None if np.isnan(f) else f


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _int_or_none(value: float) -> int | None:
    return None if value != value else int(value)


def read_gpu_hours(
    store: Store,
    settings: Settings,
    window: Window,
    *,
    idle_pct: float = 0.0,
    cluster: str = "",
    gpu_uuid: str = "",
    deployment: str = "",
    hour_rows: HourRows | None = None,
) -> GpuHours:
    """The GPU-hours of `window` from the hourly rollup (idle minutes at `idle_pct`; 0: none
    counted, and the query skips the threshold), kept while the rollup is unchanged.
    `hour_rows`: the rollup's rows as the overview shares them (`api.findings.hour_rows`),
    claimed and used where they hold the whole fleet over `window` at `idle_pct`."""

    def compute() -> GpuHours:
        if (
            hour_rows is not None
            and not (cluster or gpu_uuid or deployment)
            and hour_rows.covers(window.start, window.end, idle_pct=idle_pct, held_mib=hour_rows.held_mib)
        ):
            table = hour_rows.between(window.start, window.end)
            if idle_pct <= 0:  # GPU_ROWS: every reported minute is busy
                table = table.set_column(table.schema.get_field_index("busy"), "busy", table["reported"])
        else:
            table = store.arrow(
                GPU_ROWS,
                start=window.start,
                end=window.end,
                idle_pct=idle_pct,
                cluster=cluster,
                gpu_uuid=gpu_uuid,
                deployment=deployment,
            )
        h = merge(table, int(window.start.timestamp()), int(window.end.timestamp()), deployment=deployment)
        return _only(h, gpu_uuid) if gpu_uuid else h

    key = ("gpu_hours", window.start, window.end, idle_pct, cluster, gpu_uuid, deployment)
    try:
        return kept(store, settings, key, ("findings_gpu_hour",), compute)
    finally:
        if hour_rows is not None:
            hour_rows.settle()  # claimed in `compute`, or never


def read_fleet_hours(
    store: Store,
    settings: Settings,
    window: Window,
    *,
    cluster: str = "",
    gpu_uuid: str = "",
    deployment: str = "",
    hour_rows: HourRows | None = None,
) -> FleetData:
    """Per-GPU totals, fleet totals, cost by GPU model and the idle pattern over `window`
    (`hour_rows`: as `read_gpu_hours`)."""
    f = settings.findings
    h = read_gpu_hours(
        store,
        settings,
        window,
        idle_pct=f.idle_threshold_pct,
        cluster=cluster,
        gpu_uuid=gpu_uuid,
        deployment=deployment,
        hour_rows=hour_rows,
    )
    n = len(h.keys)
    gpu = h.gpu

    def total(values: np.ndarray) -> list[float]:
        return np.bincount(gpu, weights=values, minlength=n).tolist()

    def peak(values: np.ndarray) -> list[float]:
        out = np.full(n, np.nan)
        np.fmax.at(out, gpu, values.astype(np.float64))
        return out.tolist()

    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, gpu, np.arange(len(gpu)))
    minutes, idle_minutes, held = total(h.minutes), total(h.idle_minutes), total(h.idle_held_minutes)
    util_sum, util_n = total(h.util_sum), total(h.util_n)
    power_sum, power_n = total(h.power_sum_mw), total(h.power_n)
    util_max, mem_used, mem_total = peak(h.util_max), peak(h.mem_used_max), peak(h.mem_total)
    gpu_index = peak(h.gpu_index)
    prices = PriceBook(settings.cost)
    gpus: list[GpuOut] = []
    listed: list[int] = []
    for i, row in enumerate(last.tolist()):
        if row < 0:
            continue
        cl, host, uuid = h.keys[i]
        name = h.gpu_names[h.gpu_name[row]] if h.gpu_names else ""
        hours = minutes[i] / 60
        idle = idle_minutes[i] / 60
        price = prices.per_hour(name, host)
        util = _ratio(util_sum[i], util_n[i])
        power = _ratio(power_sum[i], power_n[i])
        listed.append(i)
        gpus.append(
            GpuOut(
                cluster=cl,
                host=host,
                gpu_uuid=uuid,
                gpu_index=int(gpu_index[i]),
                gpu_name=name,
                deployment=h.deployments[h.deployment[row]] if h.deployments else "",
                hours=round(hours, 4),
                idle_hours=round(idle, 4),
                idle_held_hours=round(held[i] / 60, 4),
                idle_share=round(idle / hours, 4) if hours else 0.0,
                util_mean_pct=None if util is None else round(util, 2),
                util_max_pct=round(float(util_max[i]), 2),
                power_mean_w=None if power is None else round(power / 1000, 1),
                mem_used_max_bytes=_int_or_none(mem_used[i]),
                mem_total_bytes=_int_or_none(mem_total[i]),
                usd_per_hour=round(price, 4),
                cost_usd=round(hours * price, 2),
                idle_cost_usd=round(idle * price, 2),
                last_seen=datetime.fromtimestamp(int(h.hour[row]), UTC),
            )
        )
    order = sorted(
        range(len(gpus)), key=lambda k: (gpus[k].cluster, gpus[k].host, gpus[k].gpu_index, gpus[k].gpu_uuid)
    )
    gpus = [gpus[k] for k in order]
    position = np.full(n, -1, dtype=np.int64)
    position[[listed[k] for k in order]] = np.arange(len(order))
    util_total = _ratio(float(h.util_sum.sum()), float(h.util_n.sum()))
    hours_total = sum(g.hours for g in gpus)
    cost_total = sum(g.cost_usd for g in gpus)
    totals = FleetTotals(
        gpus=len(gpus),
        gpu_hours=round(hours_total, 2),
        idle_gpu_hours=round(sum(g.idle_hours for g in gpus), 2),
        idle_held_gpu_hours=round(sum(g.idle_held_hours for g in gpus), 2),
        cost_usd=round(cost_total, 2),
        idle_cost_usd=round(sum(g.idle_cost_usd for g in gpus), 2),
        cost_usd_per_week=round(cost_total / window.weeks, 2) if window.seconds else 0.0,
        util_mean_pct=None if util_total is None else round(util_total, 2),
    )
    return FleetData(gpus, totals, _by_model(gpus), idle_pattern(h, f.timezone), h, position)


def _only(h: GpuHours, uuid: str) -> GpuHours:
    """`h` without GPUs other than `uuid` (the query also reads the hosts' rows)."""
    wanted = np.array([k[2] == uuid for k in h.keys] or [False])
    keep = np.flatnonzero(wanted[h.gpu]) if len(h.gpu) else np.zeros(0, dtype=np.int64)
    if len(keep) == len(h.gpu):
        return h
    fields = {name: getattr(h, name) for name in h.__dataclass_fields__}
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            fields[name] = value[keep]
    return GpuHours(**fields)


def _by_model(gpus: Sequence[GpuOut]) -> list[ModelLine]:
    lines: dict[str, ModelLine] = {}
    for g in gpus:
        line = lines.setdefault(
            g.gpu_name, ModelLine(gpu_name=g.gpu_name, gpus=0, gpu_hours=0, cost_usd=0, idle_cost_usd=0)
        )
        line.gpus += 1
        line.gpu_hours = round(line.gpu_hours + g.hours, 2)
        line.cost_usd = round(line.cost_usd + g.cost_usd, 2)
        line.idle_cost_usd = round(line.idle_cost_usd + g.idle_cost_usd, 2)
    return sorted(lines.values(), key=lambda m: -m.cost_usd)


def idle_pattern(hours: GpuHours, tz_name: str) -> IdlePattern:
    """Mean idle GPUs per weekday × hour slot: idle GPU-minutes in the slot / 60 / the number
    of distinct clock hours of that slot in the data."""
    tz = ZoneInfo(tz_name)
    idle = np.zeros((7, 24))
    seen = np.zeros((7, 24))
    stamps, at = np.unique(hours.hour, return_inverse=True)
    per_hour = np.bincount(at, weights=hours.idle_minutes, minlength=len(stamps))
    for stamp, minutes in zip(stamps.tolist(), per_hour.tolist(), strict=True):
        local = datetime.fromtimestamp(stamp, tz)
        idle[local.weekday(), local.hour] += minutes
        seen[local.weekday(), local.hour] += 1
    cells: list[list[float | None]] = [
        [round(idle[d, h] / 60 / seen[d, h], 2) if seen[d, h] else None for h in range(24)] for d in range(7)
    ]
    return IdlePattern(timezone=tz_name, weekdays=list(WEEKDAYS), hours=list(range(24)), idle_gpus=cells)


def read_utilisation(
    store: Store, window: Window, step_s: int, data: FleetData, *, cluster: str = ""
) -> UtilSeries:
    """The fleet's utilisation per point: mean, 10th and 90th percentile across GPUs, and the
    GPU × time matrix, GPUs in the order of `data.gpus`."""
    times = time_buckets(window, step_s)
    index = {g.gpu_uuid: i for i, g in enumerate(data.gpus)}
    util_sum: np.ndarray = np.zeros((len(data.gpus), len(times)))
    util_n: np.ndarray = np.zeros((len(data.gpus), len(times)))
    t0 = int(times[0].timestamp()) if times else 0
    if step_s >= 3600:
        h = data.hours
        rows = data.position[h.gpu] if len(h.gpu) else np.zeros(0, dtype=np.int64)
        cols = (h.hour - t0) // step_s
        usum, un = h.util_sum, h.util_n
    else:
        table = store.arrow(
            GPU_MINUTE_SERIES, start=window.start, end=window.end, step_s=step_s, cluster=cluster, gpu_uuid=""
        )
        rows = row_index(table["gpu_uuid"], index)
        cols = (epoch_seconds(table["bucket"]) - t0) // step_s
        usum = np.nan_to_num(table["util_mean_pct"].to_numpy(zero_copy_only=False).astype(float))
        un = np.ones(len(rows))
    ok = (rows >= 0) & (cols >= 0) & (cols < len(times))
    cell = rows[ok] * len(times) + cols[ok]
    util_sum = np.bincount(cell, weights=usum[ok], minlength=util_sum.size).reshape(util_sum.shape)
    util_n = np.bincount(cell, weights=un[ok], minlength=util_n.size).reshape(util_n.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(util_n > 0, util_sum / np.where(util_n > 0, util_n, 1), np.nan)
        reporting = np.any(~np.isnan(matrix), axis=0) if matrix.size else np.zeros(len(times), bool)
        mean = np.where(
            util_n.sum(0) > 0, util_sum.sum(0) / np.where(util_n.sum(0) > 0, util_n.sum(0), 1), np.nan
        )
        if step_s < 3600:
            mean = np.nanmean(np.where(reporting, matrix, 0), axis=0) if matrix.size else mean
        p10 = _nanpercentile(matrix, 10)
        p90 = _nanpercentile(matrix, 90)
    return UtilSeries(
        times=times,
        mean_pct=_list(mean, reporting),
        p10_pct=_list(p10, reporting),
        p90_pct=_list(p90, reporting),
        gpus=[f"{g.host} / {g.gpu_index}" for g in data.gpus],
        gpu_uuids=[g.gpu_uuid for g in data.gpus],
        by_gpu=[_list(row) for row in matrix],
    )


def epoch_seconds(column: pa.ChunkedArray) -> np.ndarray:
    """A DateTime column (the store sends UInt32 seconds or timestamps) as int64 seconds."""
    if pa.types.is_timestamp(column.type):
        column = pc.cast(pc.cast(column, pa.timestamp("s", tz="UTC")), pa.int64())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def row_index(column: pa.ChunkedArray, index: dict[str, int]) -> np.ndarray:
    """Each value's position in `index` (-1 when absent), looked up once per distinct value."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    lookup = np.array([index.get(v, -1) for v in encoded.dictionary.to_pylist()] + [-1], dtype=np.int64)
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return lookup[codes]


def _nanpercentile(matrix: np.ndarray, q: float) -> np.ndarray:
    """Per column, the q-th percentile of its non-NaN values (numpy's linear method)."""
    if matrix.size == 0:
        return np.full(matrix.shape[1] if matrix.ndim == 2 else 0, np.nan)
    ordered = np.sort(matrix, axis=0)  # NaN last
    count = np.sum(~np.isnan(matrix), axis=0)
    pos = q / 100 * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    columns = np.arange(matrix.shape[1])
    low, high = ordered[lo, columns], ordered[hi, columns]
    out = low + (high - low) * (pos - lo)
    return np.where(count > 0, out, np.nan)


def _list(values: np.ndarray, mask: np.ndarray | None = None) -> list[float | None]:
    out: list[float | None] = []
    for i, v in enumerate(values.tolist()):
        if (mask is not None and not mask[i]) or v != v:  # NaN
            out.append(None)
        else:
            out.append(round(v, 2))
    return out


def time_buckets(window: Window, step_s: int) -> list[datetime]:
    first = int(window.start.timestamp()) // step_s * step_s
    last = int(window.end.timestamp() - 1) // step_s * step_s
    return [datetime.fromtimestamp(t, UTC) for t in range(first, last + 1, step_s)]


def as_utc(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value), UTC)  # type: ignore[call-overload]


def read_fleet(
    store: Store, settings: Settings, window: Window, *, cluster: str = ""
) -> tuple[FleetOut, FleetData]:
    data = read_fleet_hours(store, settings, window, cluster=cluster)
    step = series_step_s(window)
    out = FleetOut(
        window=WindowOut(start=window.start, end=window.end, step_s=step),
        idle_threshold_pct=settings.findings.idle_threshold_pct,
        totals=data.totals,
        by_model=data.by_model,
        utilisation=read_utilisation(store, window, step, data, cluster=cluster),
        idle_pattern=data.idle_pattern,
    )
    return out, data


def read_gpu(store: Store, settings: Settings, window: Window, uuid: str) -> GpuDetailOut:
    """One GPU: its totals, its series (utilisation, power, memory, requests in flight) and
    its idle pattern. NotFound when it did not report in the window."""
    data = read_fleet_hours(store, settings, window, gpu_uuid=uuid)
    if not data.gpus:
        raise NotFound(
            f"GPU {uuid} reported nothing between {window.start:%Y-%m-%d %H:%M} and "
            f"{window.end:%Y-%m-%d %H:%M} UTC; try a longer window"
        )
    step = gpu_step_s(window)
    table = store.arrow(
        GPU_MINUTE_SERIES, start=window.start, end=window.end, step_s=step, cluster="", gpu_uuid=uuid
    )
    flight = {
        int(as_utc(r["bucket"]).timestamp()): r["mean_in_flight"]
        for r in store.rows(GPU_INFLIGHT, start=window.start, end=window.end, step_s=step, gpu_uuid=uuid)
    }
    by_time = {int(as_utc(r["bucket"]).timestamp()): r for r in table.to_pylist()}
    series = []
    for t in time_buckets(window, step):
        key = int(t.timestamp())
        r = by_time.get(key)
        series.append(
            GpuPoint(
                time=t,
                util_mean_pct=None
                if r is None or r["util_mean_pct"] is None
                else round(r["util_mean_pct"], 2),
                power_mean_w=None if r is None or r["power_mean_w"] is None else round(r["power_mean_w"], 1),
                mem_used_max_bytes=None if r is None else r["mem_used_max_bytes"],
                in_flight_mean=None if r is None else round(flight.get(key, 0.0), 3),
            )
        )
    return GpuDetailOut(
        window=WindowOut(start=window.start, end=window.end, step_s=step),
        idle_threshold_pct=settings.findings.idle_threshold_pct,
        gpu=data.gpus[0],
        series=series,
        idle_pattern=data.idle_pattern,
    )


GpuSort = Literal["host", "cost", "idle", "util"]


def sort_gpus(gpus: list[GpuOut], sort: GpuSort) -> list[GpuOut]:
    if sort == "cost":
        return sorted(gpus, key=lambda g: -g.cost_usd)
    if sort == "idle":
        return sorted(gpus, key=lambda g: (-g.idle_cost_usd, -g.idle_hours))
    if sort == "util":
        return sorted(gpus, key=lambda g: g.util_mean_pct if g.util_mean_pct is not None else -1)
    return gpus


def offset_of(cursor: str | None) -> int:
    from api.errors import BadRequest

    if not cursor:
        return 0
    if not cursor.isdigit() or len(cursor) > 9:
        raise BadRequest("cursor is not one this API returned")
    return int(cursor)


# --- routes ------------------------------------------------------------------------------

_WINDOW = Query("7d", max_length=16, description="Window length ending at `end`: 1h, 24h, 7d, 30d, …")
_END = Query(None, description="End of the window (ISO 8601, UTC if no zone); default now")


@router.get(
    "/api/v1/gpus", response_model=GpuPage, summary="Every GPU over a window, with hours, idle and cost"
)
async def list_gpus(
    request: Request,
    window: str = _WINDOW,
    end: datetime | None = _END,
    cluster: str = Query("", max_length=256),
    deployment: str = Query("", max_length=256, description="Only GPUs last serving this deployment"),
    sort: GpuSort = Query(
        "host", description="host (fleet order), cost, idle (idle dollars), util (least used first)"
    ),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=16),
    store: Store = Depends(get_store),
) -> GpuPage:
    w = parse_window(window, end)
    settings = await run_in_threadpool(configured_settings, request)
    data = await run_in_threadpool(read_fleet_hours, store, settings, w, cluster=cluster)
    gpus = [g for g in data.gpus if not deployment or g.deployment == deployment]
    gpus = sort_gpus(gpus, sort)
    offset = offset_of(cursor)
    return GpuPage(
        window=WindowOut(start=w.start, end=w.end, step_s=series_step_s(w)),
        total=len(gpus),
        items=gpus[offset : offset + limit],
        next_cursor=str(offset + limit) if offset + limit < len(gpus) else None,
    )


@router.get(
    "/api/v1/gpus/{uuid}", response_model=GpuDetailOut, summary="One GPU: totals, series, idle pattern"
)
async def get_gpu(
    request: Request,
    uuid: str,
    window: str = _WINDOW,
    end: datetime | None = _END,
    store: Store = Depends(get_store),
) -> GpuDetailOut:
    w = parse_window(window, end)
    settings = await run_in_threadpool(configured_settings, request)
    return await run_in_threadpool(read_gpu, store, settings, w, uuid)


@router.get(
    "/api/v1/fleet", response_model=FleetOut, summary="Fleet totals, utilisation over time, idle pattern"
)
async def get_fleet(
    request: Request,
    window: str = _WINDOW,
    end: datetime | None = _END,
    cluster: str = Query("", max_length=256),
    store: Store = Depends(get_store),
) -> FleetOut:
    w = parse_window(window, end)
    settings = await run_in_threadpool(configured_settings, request)
    out, _ = await run_in_threadpool(read_fleet, store, settings, w, cluster=cluster)
    return out
