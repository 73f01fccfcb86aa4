"""GPU readings that follow from a replica's load, one per GPU per simulated minute.

A real collector samples every second; the demo keeps one sample a minute, standing for
that minute's average. NVML's utilisation counts time with any kernel running, so it
saturates as soon as a request is in flight; SM activity (GPM, Hopper only) tells how
much of the GPU the work fills: high for prefill, low for decode at small batches, which
are memory-bound (high DRAM bandwidth instead). Power, clocks and temperature follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from api.demo.fleet import MIB, Gpu
from api.demo.simulate import ReplicaState

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NOTHING_LOADED_BYTES = 1 * MIB
"""NVML's memory used on a GPU with no process (persistence mode on)."""
CUDA_CONTEXT_BYTES = 514 * MIB


@dataclass(slots=True)
class GpuReadings:
    """One GPU's fields per minute; `None` where this GPU model has no such field."""

    util_gpu_pct: IntArray
    util_mem_pct: IntArray
    mem_used_bytes: IntArray
    mem_total_bytes: IntArray
    power_mw: IntArray
    power_limit_mw: IntArray
    energy_mj: IntArray
    sm_clock_mhz: IntArray
    temperature_c: IntArray
    sm_activity_pct: FloatArray | None
    sm_occupancy_pct: FloatArray | None
    dram_bw_pct: FloatArray | None
    tensor_active_pct: FloatArray | None
    process_pid: int | None
    process_mem_bytes: IntArray | None


def readings(gpu: Gpu, state: ReplicaState, rng: np.random.Generator, first_energy_mj: int) -> GpuReadings:
    """`state`: the load of the replica that owns the GPU (an idle state when none does)."""
    model = gpu.host.gpu
    n = len(state.active)
    replica = gpu.replica
    active = np.clip(state.active * rng.normal(1.0, 0.015, n), 0.0, 1.0)
    prefill = np.minimum(state.prefill_busy, active)
    decode = np.maximum(active - prefill, 0.0)
    b = state.batch
    tp = replica.deployment.tp if replica else 1
    comm = 0.9 if tp > 1 else 1.0  # tensor-parallel all-reduces leave the SMs waiting
    sm = 100 * comm * (0.86 * prefill + decode * (0.16 + 0.5 * b / (b + 24)))
    dram = 100 * (0.32 * prefill + decode * (0.6 + 0.25 * b / (b + 32)))
    tensor = 100 * comm * (0.68 * prefill + decode * (0.07 + 0.4 * b / (b + 24)))
    busy = active > 0.002
    sm = np.where(busy, np.clip(sm * rng.normal(1.0, 0.04, n), 0.3, 100.0), 0.0)
    dram = np.where(busy, np.clip(dram * rng.normal(1.0, 0.04, n), 0.3, 100.0), 0.0)
    tensor = np.where(busy, np.clip(tensor * rng.normal(1.0, 0.05, n), 0.0, 100.0), 0.0)
    occupancy = np.where(busy, np.clip(sm * rng.normal(0.55, 0.03, n), 0.0, 100.0), 0.0)
    util = np.where(busy, np.clip(np.rint(100 * active + rng.normal(0, 1.0, n)), 1, 100), 0)
    util_mem = np.where(busy, np.clip(np.rint(dram * 0.85), 1, 100), 0)

    limit = model.power_limit_mw
    idle = model.idle_power_mw
    holds = replica is not None
    base = idle * (1.06 if holds else 1.0)
    draw = base + (limit - idle) * (0.08 * active + 0.55 * sm / 100 + 0.37 * dram / 100)
    power = np.clip(draw * rng.normal(1.0, 0.012, n), idle * 0.9, limit).astype(np.int64)
    throttle = np.clip((power / limit - 0.93) / 0.07, 0.0, 1.0)
    clock = np.where(busy, model.max_sm_clock_mhz * (1 - 0.18 * throttle), model.idle_sm_clock_mhz)
    clock = np.rint(clock / 15) * 15  # NVML reports clocks in steps
    temperature = _temperature(power / limit, rng)
    energy = first_energy_mj + np.cumsum(power * 60) - power * 60

    if replica is not None:
        reserved = int(model.mem_total_bytes * replica.deployment.perf.mem_fraction)
        used = reserved + CUDA_CONTEXT_BYTES + rng.integers(0, 8, n) * 2 * MIB
        pid: int | None = replica.pid + replica.gpu_indices.index(gpu.index)
        process_mem: IntArray | None = used - 2 * MIB
    else:
        used = np.full(n, NOTHING_LOADED_BYTES, dtype=np.int64)
        pid, process_mem = None, None
    return GpuReadings(
        util_gpu_pct=util.astype(np.int64),
        util_mem_pct=util_mem.astype(np.int64),
        mem_used_bytes=np.asarray(used, dtype=np.int64),
        mem_total_bytes=np.full(n, model.mem_total_bytes, dtype=np.int64),
        power_mw=power,
        power_limit_mw=np.full(n, limit, dtype=np.int64),
        energy_mj=energy.astype(np.int64),
        sm_clock_mhz=clock.astype(np.int64),
        temperature_c=temperature,
        sm_activity_pct=sm if model.gpm else None,
        sm_occupancy_pct=occupancy if model.gpm else None,
        dram_bw_pct=dram if model.gpm else None,
        tensor_active_pct=tensor if model.gpm else None,
        process_pid=pid,
        process_mem_bytes=np.asarray(process_mem, dtype=np.int64) if process_mem is not None else None,
    )


def _temperature(power_share: FloatArray, rng: np.random.Generator) -> IntArray:
    """Die temperature lags power: an exponential approach, a few minutes' time constant."""
    target = 29 + 47 * power_share
    out = np.empty(len(target))
    t = float(target[0]) if len(target) else 0.0
    for i, goal in enumerate(target):
        t += 0.35 * (goal - t)
        out[i] = t
    return np.clip(np.rint(out + rng.normal(0, 0.4, len(out))), 20, 95).astype(np.int64)
