"""The NVML GPU sampler: one ``sample()`` call reads every GPU once and returns GpuSamples."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from collector.config import CollectorConfig
from collector.nvml import GpuDevice, Nvml
from collector.samples import GpuSample, ProcessUsage

log = logging.getLogger(__name__)


class GpuSampler:
    """Turns NVML readings into GpuSamples. Not thread-safe: one sampling thread calls it.

    Three reads cost far more CPU than the rest (measured on two loaded H200s, in CPU time
    per read: the energy counter 3.8-5.6 ms, per-process utilisation 2 ms, the list of compute
    processes 0.14 ms against ~0.02 ms for the other reads), so they are made on every
    ``energy_every``-th and ``process_every``-th tick only. Ticks without the energy read
    leave ``energy_mj`` empty; ticks between process reads repeat the last list of processes
    and their memory, without their ``sm_util_pct``. A GPU whose last list was empty has it
    read every tick (0.02 ms on an idle H200), so a serving process that starts shows at once.
    Per-process utilisation is the driver's latest sample period per process (averaged where
    it returns several newer than the last read), and not asked for at all on a GPU with no
    compute process. GPM metrics need two snapshots, so they appear from the second tick on.
    The device list is re-read every ``rescan_every`` ticks to notice MIG reconfiguration.
    """

    def __init__(
        self,
        nvml: Nvml,
        *,
        energy_every: int = 5,
        process_every: int = 5,
        rescan_every: int = 60,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._nvml = nvml
        self._energy_every = max(1, energy_every)
        self._process_every = max(1, process_every)
        self._rescan_every = max(1, rescan_every)
        self._clock = clock
        self._tick = 0
        self._devices: list[GpuDevice] = []
        self._gpm: dict[str, _GpmPair] = {}
        self._proc_seen_us: dict[str, int] = {}
        self._procs: dict[str, tuple[ProcessUsage, ...]] = {}  # the last list read, per GPU

    @classmethod
    def from_config(
        cls, nvml: Nvml, cfg: CollectorConfig, clock: Callable[[], int] = time.time_ns
    ) -> GpuSampler:
        """The sampler a collector with settings `cfg` runs: its intervals in ticks, the
        device list re-read every minute."""
        return cls(
            nvml,
            energy_every=round(cfg.energy_interval / cfg.interval),
            process_every=round(cfg.process_interval / cfg.interval),
            rescan_every=max(1, round(60 / cfg.interval)),
            clock=clock,
        )

    def sample(self) -> list[GpuSample]:
        """Read every GPU now. Empty where NVML is unavailable."""
        if not self._nvml.ready:
            return []
        if self._tick % self._rescan_every == 0:
            self._rescan()
        read_energy = self._tick % self._energy_every == 0
        read_processes = self._tick % self._process_every == 0
        self._tick += 1
        now_ns = self._clock()
        return [self._read(dev, now_ns, read_energy, read_processes) for dev in self._devices]

    def close(self) -> None:
        """Free GPM buffers. The NVML session itself belongs to the caller."""
        for uuid in list(self._gpm):
            self._drop_gpm(uuid)

    def _rescan(self) -> None:
        devices = self._nvml.devices()
        if [d.uuid for d in devices] != [d.uuid for d in self._devices]:
            log.info(
                "sampling %d GPU(s): %s", len(devices), ", ".join(f"{d.index}:{d.uuid}" for d in devices)
            )
        present = {d.uuid for d in devices}
        for uuid in [u for u in self._gpm if u not in present]:
            self._drop_gpm(uuid)
        for uuid in [u for u in self._procs if u not in present]:
            del self._procs[uuid]
            self._proc_seen_us.pop(uuid, None)
        for dev in devices:
            if dev.uuid not in self._gpm and self._nvml.gpm_supported(dev):
                buffers = (self._nvml.gpm_new_sample(), self._nvml.gpm_new_sample())
                if None in buffers:
                    for buf in buffers:
                        self._nvml.gpm_free(buf)
                    continue
                self._gpm[dev.uuid] = _GpmPair(buffers)
        self._devices = devices

    def _drop_gpm(self, uuid: str) -> None:
        pair = self._gpm.pop(uuid, None)
        for buf in pair.buffers if pair else ():
            self._nvml.gpm_free(buf)

    def _read(self, dev: GpuDevice, now_ns: int, read_energy: bool, read_processes: bool) -> GpuSample:
        nvml = self._nvml
        util = nvml.utilization_pct(dev)
        mem = nvml.memory_bytes(dev)
        whole_gpu = not dev.is_mig  # power, clocks and temperature belong to the physical GPU
        gpm = self._gpm_metrics(dev)
        return GpuSample(
            time_ns=now_ns,
            index=dev.index,
            uuid=dev.uuid,
            name=dev.name,
            util_gpu_pct=util[0] if util else None,
            util_mem_pct=util[1] if util else None,
            mem_used_bytes=mem[0] if mem else None,
            mem_total_bytes=mem[1] if mem else None,
            power_mw=nvml.power_mw(dev) if whole_gpu else None,
            power_limit_mw=nvml.power_limit_mw(dev) if whole_gpu else None,
            energy_mj=nvml.energy_mj(dev) if whole_gpu and read_energy else None,
            sm_clock_mhz=nvml.sm_clock_mhz(dev) if whole_gpu else None,
            temperature_c=nvml.temperature_c(dev) if whole_gpu else None,
            sm_activity_pct=gpm.get("sm_activity_pct"),
            sm_occupancy_pct=gpm.get("sm_occupancy_pct"),
            dram_bw_pct=gpm.get("dram_bw_pct"),
            tensor_active_pct=gpm.get("tensor_active_pct"),
            processes=self._processes(dev, read_processes),
        )

    def _gpm_metrics(self, dev: GpuDevice) -> dict[str, float]:
        pair = self._gpm.get(dev.uuid)
        if pair is None:
            return {}
        # Two buffers take turns: the one not holding the previous snapshot takes this one.
        current = pair.buffers[1] if pair.filled is pair.buffers[0] else pair.buffers[0]
        if not self._nvml.gpm_take(dev, current):
            return {}
        values = self._nvml.gpm_metrics(pair.filled, current) if pair.filled is not None else {}
        pair.filled = current
        return values

    def _processes(self, dev: GpuDevice, due: bool) -> tuple[ProcessUsage, ...]:
        """The GPU's compute processes: read when ``due``, or while the last list was empty
        (cheap then, and a new serving process shows at once); else the last list again."""
        last = self._procs.get(dev.uuid, ())
        if not due and last:
            return last
        memory = dict(self._nvml.processes(dev))
        sm_pct: dict[int, int] = {}
        if due and memory:
            seen = self._proc_seen_us.get(dev.uuid, 0)
            per_pid: dict[int, list[int]] = {}
            for pid, pct, stamp_us in self._nvml.process_utilization(dev, seen):
                if pct <= 100:  # the driver reports garbage for samples it could not take
                    per_pid.setdefault(pid, []).append(pct)
                seen = max(seen, stamp_us)
            self._proc_seen_us[dev.uuid] = seen
            sm_pct = {pid: round(sum(v) / len(v)) for pid, v in per_pid.items()}
        pids = sorted(set(memory) | set(sm_pct))
        self._procs[dev.uuid] = tuple(ProcessUsage(pid, memory.get(pid), None) for pid in pids)
        return tuple(ProcessUsage(pid, memory.get(pid), sm_pct.get(pid)) for pid in pids)


class _GpmPair:
    """A device's two GPM buffers and which one holds the latest snapshot (None before the first)."""

    __slots__ = ("buffers", "filled")

    def __init__(self, buffers: tuple[Any, Any]) -> None:
        self.buffers = buffers
        self.filled: Any = None
