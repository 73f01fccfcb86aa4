"""The sampler's conversions, run on NVML readings recorded on a real H200 (driver 580.159.04):
idle, under a bf16 matmul load, and with 20 GiB held by an idle process. The expected numbers
below are copied by hand from the recorded NVML answers in tests/fixtures/nvml/*.json."""

from __future__ import annotations

import pytest

from collector.gpu import GpuSampler
from collector.nvml import Nvml
from collector.samples import GpuSample, ProcessUsage
from tests.collector.conftest import load_tape
from tests.fixtures.nvml.nvml_tape import ReplayPynvml

UUID = "GPU-f6e49fd3-0d60-a1ab-173b-e421086f0bbc"
GIB = 2**30


def replay(name: str) -> tuple[list[GpuSample], ReplayPynvml]:
    """Every tick of a tape through the real Nvml + GpuSampler: one GPU, so one sample a tick."""
    fake = ReplayPynvml(load_tape(name))
    nvml = Nvml(lib=fake)
    assert nvml.start()
    sampler = GpuSampler(nvml, energy_every=5, process_every=5, clock=fake.now_ns)
    samples = []
    for tick in range(fake.tick_count):
        if tick:
            fake.advance()
        (sample,) = sampler.sample()
        samples.append(sample)
    sampler.close()
    nvml.shutdown()
    return samples, fake


def test_a_loaded_gpu_reads_as_nvml_reported_it() -> None:
    samples, _ = replay("load")
    s = samples[3]  # tick 3 of load.json
    assert (s.index, s.uuid, s.name) == (0, UUID, "NVIDIA H200")
    assert (s.util_gpu_pct, s.util_mem_pct) == (99, 24)
    assert (s.mem_used_bytes, s.mem_total_bytes) == (1_704_853_504, 150_754_820_096)
    assert (s.power_mw, s.power_limit_mw) == (692_689, 700_000)
    assert (s.sm_clock_mhz, s.temperature_c) == (1455, 60)
    assert s.sm_activity_pct == pytest.approx(96.21239158025196)
    assert s.sm_occupancy_pct == pytest.approx(14.218495786237026)
    assert s.tensor_active_pct == pytest.approx(93.37253265766722)
    assert s.dram_bw_pct == pytest.approx(17.496477329776706)


def test_gpm_metrics_need_two_snapshots_so_the_first_tick_has_none() -> None:
    samples, _ = replay("load")
    first = samples[0]
    assert (first.sm_activity_pct, first.sm_occupancy_pct, first.dram_bw_pct, first.tensor_active_pct) == (
        None,
        None,
        None,
        None,
    )
    assert all(s.sm_activity_pct is not None for s in samples[1:])


def test_energy_is_read_every_fifth_tick_and_agrees_with_the_power_draw() -> None:
    samples, fake = replay("load")
    read = [i for i, s in enumerate(samples) if s.energy_mj is not None]
    assert read == [0, 5, 10]
    assert (samples[0].energy_mj, samples[5].energy_mj) == (5_743_547, 9_201_081)
    # 3,457,534 mJ over the ~5 s between ticks 0 and 5 is ~690 W; NVML's power reads ~690,000 mW.
    seconds = (fake._ticks[5]["t_ns"] - fake._ticks[0]["t_ns"]) / 1e9
    assert samples[5].energy_mj is not None and samples[0].energy_mj is not None
    assert samples[3].power_mw is not None
    watts = (samples[5].energy_mj - samples[0].energy_mj) / 1000 / seconds
    assert watts == pytest.approx(samples[3].power_mw / 1000, rel=0.05)


def test_the_matmul_process_is_seen_with_its_memory_and_sm_share() -> None:
    samples, fake = replay("load")
    pid = fake.meta["child_pid"]
    assert pid == 447
    assert samples[5].processes == (ProcessUsage(pid=447, mem_used_bytes=1_050_673_152, sm_util_pct=99),)
    # between the slow reads the process and its memory are still reported, its SM share is not
    assert samples[6].processes == (ProcessUsage(pid=447, mem_used_bytes=1_050_673_152, sm_util_pct=None),)


def test_an_idle_gpu_reads_idle_with_no_processes() -> None:
    samples, _ = replay("idle")
    s = samples[3]
    assert (s.util_gpu_pct, s.util_mem_pct, s.sm_activity_pct, s.tensor_active_pct) == (0, 0, 0.0, 0.0)
    assert (s.power_mw, s.sm_clock_mhz, s.temperature_c) == (82_806, 345, 41)
    assert s.mem_used_bytes == 644_939_776
    assert all(x.processes == () for x in samples)


def test_memory_held_by_an_idle_process_shows_as_reserved_not_computing() -> None:
    samples, fake = replay("held")
    s = samples[5]
    assert (s.util_gpu_pct, s.sm_activity_pct) == (0, 0.0)
    assert s.mem_used_bytes is not None and s.mem_used_bytes > 20 * GIB
    assert s.processes == (
        ProcessUsage(pid=fake.meta["child_pid"], mem_used_bytes=22_114_467_840, sm_util_pct=0),
    )


def test_the_costly_reads_are_made_every_fifth_tick_and_per_process_shares_never_on_an_idle_gpu() -> None:
    # In CPU time on two loaded H200s: the energy counter 3.8-5.6 ms a read, per-process
    # utilisation 2 ms, the process list 0.14 ms. On the idle tape NVML only ever answered
    # NOT_FOUND for per-process utilisation.
    _, idle = replay("idle")
    samples, load = replay("load")
    assert idle.calls["nvmlDeviceGetProcessUtilization"] == 0
    assert load.calls["nvmlDeviceGetProcessUtilization"] == 3  # ticks 0, 5 and 10 of 12
    assert load.calls["nvmlDeviceGetComputeRunningProcesses"] == 3
    assert idle.calls["nvmlDeviceGetComputeRunningProcesses"] == 12  # no process: every tick
    assert load.calls["nvmlDeviceGetTotalEnergyConsumption"] == 3
    # the list read at tick 5 is repeated (memory, no share) until the read at tick 10
    assert {s.processes for s in samples[6:10]} == {(ProcessUsage(447, 1_050_673_152, None),)}
    assert [s.energy_mj is not None for s in samples] == [i % 5 == 0 for i in range(12)]
