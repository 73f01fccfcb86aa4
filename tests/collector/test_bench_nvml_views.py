"""The views of pynvml that `bench/collector.py` measures real GPUs through: the first N GPUs
(`--per-gpu`) and N GPUs aliased onto fewer (`--alias-gpus`). Run here over NVML answers
recorded on an H200; each view must leave the readings as NVML gave them."""

from __future__ import annotations

from bench.collector import aliased_gpus, first_gpus, widen_tape
from collector.gpu import GpuSampler
from collector.nvml import Nvml
from collector.samples import GpuSample
from tests.collector.conftest import load_tape
from tests.fixtures.nvml.nvml_tape import ReplayPynvml

UUID = "GPU-f6e49fd3-0d60-a1ab-173b-e421086f0bbc"


def first_tick(lib: object) -> list[GpuSample]:
    nvml = Nvml(lib=lib)
    assert nvml.start()
    sampler = GpuSampler(nvml, energy_every=5, process_every=5)
    try:
        return sampler.sample()
    finally:
        sampler.close()
        nvml.shutdown()


def test_aliased_gpus_are_the_physical_gpu_read_once_each_under_their_own_uuids() -> None:
    (one,) = first_tick(ReplayPynvml(load_tape("load")))
    replay = ReplayPynvml(load_tape("load"))
    reads_before = replay.calls["nvmlDeviceGetUtilizationRates"]
    four = first_tick(aliased_gpus(replay, 4))
    assert [(s.index, s.uuid) for s in four] == [(i, f"{UUID}-a{i}") for i in range(4)]
    for s in four:  # as recorded at tick 0
        assert (s.util_gpu_pct, s.util_mem_pct, s.mem_used_bytes, s.power_mw, s.processes) == (
            one.util_gpu_pct,
            one.util_mem_pct,
            one.mem_used_bytes,
            one.power_mw,
            one.processes,
        )
    assert (one.util_gpu_pct, one.util_mem_pct, one.mem_used_bytes) == (100, 24, 1_704_853_504)
    assert [(p.pid, p.sm_util_pct) for p in one.processes] == [(447, 85)]
    assert replay.calls["nvmlDeviceGetUtilizationRates"] - reads_before == 4  # one real read per GPU


def test_the_first_gpus_view_hides_the_rest_and_times_every_nvml_function() -> None:
    cpu_s: dict[str, float] = {}
    three = ReplayPynvml(widen_tape(load_tape("load"), 3))
    samples = first_tick(first_gpus(three, 2, cpu_s))
    assert [s.uuid for s in samples] == [f"{UUID}-0", f"{UUID}-1"]
    assert {"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo", "nvmlGpmSampleGet"} <= set(cpu_s)
    assert all(seconds >= 0 for seconds in cpu_s.values())
