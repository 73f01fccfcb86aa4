"""Plain records that flow from the samplers to the OTLP encoder. Units are in the names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """One process on one GPU during one tick."""

    pid: int
    mem_used_bytes: int | None = None
    sm_util_pct: int | None = None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU (or MIG instance) at one sampling tick. ``None`` = not supported or not read."""

    time_ns: int  # Unix time of the tick; every GPU of a tick shares it
    index: int
    uuid: str
    name: str
    util_gpu_pct: int | None = None
    util_mem_pct: int | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    power_mw: int | None = None
    power_limit_mw: int | None = None
    energy_mj: int | None = None
    sm_clock_mhz: int | None = None
    temperature_c: int | None = None
    sm_activity_pct: float | None = None
    sm_occupancy_pct: float | None = None
    dram_bw_pct: float | None = None
    tensor_active_pct: float | None = None
    processes: tuple[ProcessUsage, ...] = ()
