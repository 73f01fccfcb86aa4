"""What NVML can refuse: unsupported fields, functions missing from the binding or the driver,
no driver at all, a driver/library mismatch, and MIG. Small tapes written by hand here, in
the recorded format, for the situations the H200 we recorded on did not show."""

from __future__ import annotations

import logging
from typing import Any

import pynvml
import pytest

from collector.gpu import GpuSampler
from collector.nvml import Nvml
from collector.samples import ProcessUsage
from tests.collector.conftest import needs_no_nvidia_driver
from tests.fixtures.nvml.nvml_tape import ReplayPynvml

U = "GPU-00000000-1111-2222-3333-444444444444"
NOT_SUPPORTED = {"__nvml_error__": pynvml.NVML_ERROR_NOT_SUPPORTED}
NOT_FOUND = {"__nvml_error__": pynvml.NVML_ERROR_NOT_FOUND}


def one_gpu(**overrides: Any) -> dict[str, Any]:
    """The calls of one tick on a plain GPU without GPM; ``overrides`` replace answers by key."""
    calls: dict[str, Any] = {
        "nvmlInit()": None,
        "nvmlSystemGetDriverVersion()": "580.159.04",
        "nvmlDeviceGetCount()": 1,
        "nvmlDeviceGetHandleByIndex(0)": {"__handle__": U},
        f"nvmlDeviceGetUUID({U})": U,
        f"nvmlDeviceGetName({U})": "NVIDIA A100-SXM4-80GB",
        f"nvmlDeviceGetMigMode({U})": [0, 0],
        f"nvmlGpmQueryDeviceSupport({U})": {"version": 1, "isSupportedDevice": 0},
        f"nvmlDeviceGetUtilizationRates({U})": {"gpu": 42, "memory": 7},
        f"nvmlDeviceGetMemoryInfo({U})": {"total": 85_899_345_920, "free": 0, "used": 1_000_000},
        f"nvmlDeviceGetPowerUsage({U})": 250_000,
        f"nvmlDeviceGetEnforcedPowerLimit({U})": 400_000,
        f"nvmlDeviceGetTotalEnergyConsumption({U})": 1_000,
        f"nvmlDeviceGetClockInfo({U},1)": 1410,
        f"nvmlDeviceGetTemperature({U},0)": 35,
        f"nvmlDeviceGetComputeRunningProcesses({U})": [],
        f"nvmlDeviceGetProcessUtilization({U})": NOT_FOUND,
    }
    calls.update(overrides)
    return calls


def tape(*ticks: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta": {"synthetic": True},
        "ticks": [{"t_ns": 1_700_000_000_000_000_000 + i * 10**9, "calls": c} for i, c in enumerate(ticks)],
    }


def run(fake: Any, ticks: int) -> list[list[Any]]:
    nvml = Nvml(lib=fake)
    assert nvml.start()
    sampler = GpuSampler(nvml, energy_every=5, process_every=1, clock=fake.now_ns)
    out = []
    for i in range(ticks):
        if i:
            fake.advance()
        out.append(sampler.sample())
    nvml.shutdown()
    return out


def collector_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("collector")]


def test_an_unsupported_field_reads_as_none_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="collector")
    calls = one_gpu(**{f"nvmlDeviceGetPowerUsage({U})": NOT_SUPPORTED})
    ticks = run(ReplayPynvml(tape(calls, calls, calls)), 3)
    assert [t[0].power_mw for t in ticks] == [None, None, None]
    assert [t[0].util_gpu_pct for t in ticks] == [42, 42, 42]
    assert [m for m in collector_messages(caplog) if "power_mw" in m] == [
        "power_mw is not supported on this GPU; it stays empty"
    ]


def test_a_gpu_without_gpm_has_no_gpm_fields_and_is_not_asked_for_them() -> None:
    fake = ReplayPynvml(tape(one_gpu(), one_gpu()))
    ticks = run(fake, 2)
    assert ticks[1][0].sm_activity_pct is None
    assert fake.calls["nvmlGpmSampleAlloc"] == 0 and fake.calls["nvmlGpmSampleGet"] == 0


class WithoutFunction(ReplayPynvml):
    """An older nvidia-ml-py that lacks one function."""

    def __init__(self, tape: dict[str, Any], missing: str) -> None:
        super().__init__(tape)
        self._missing = missing

    def __getattr__(self, name: str) -> Any:
        if name == self._missing:
            raise AttributeError(name)
        return super().__getattr__(name)


def test_a_function_missing_from_nvidia_ml_py_is_logged_once_with_the_upgrade(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="collector")
    ticks = run(WithoutFunction(tape(one_gpu(), one_gpu()), "nvmlDeviceGetTotalEnergyConsumption"), 2)
    assert ticks[0][0].energy_mj is None and ticks[0][0].power_mw == 250_000
    hints = [m for m in collector_messages(caplog) if "nvmlDeviceGetTotalEnergyConsumption" in m]
    assert hints == [
        "energy_mj is unavailable: nvidia-ml-py has no nvmlDeviceGetTotalEnergyConsumption; "
        "upgrade it (pip install -U nvidia-ml-py)"
    ]


def test_a_function_the_driver_lacks_is_logged_once_asking_for_a_newer_driver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="collector")
    gone = {"__nvml_error__": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND}
    calls = one_gpu(**{f"nvmlDeviceGetTemperature({U},0)": gone})
    ticks = run(ReplayPynvml(tape(calls, calls)), 2)
    assert [t[0].temperature_c for t in ticks] == [None, None]
    assert len([m for m in collector_messages(caplog) if "newer NVIDIA driver" in m]) == 1


@needs_no_nvidia_driver
def test_with_no_nvidia_driver_nvml_says_so_in_one_line_and_sampling_yields_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # This machine has no GPU: the real pynvml fails to load libnvidia-ml.so.1.
    caplog.set_level(logging.INFO, logger="collector")
    nvml = Nvml()
    assert nvml.start() is False
    assert nvml.start() is False  # asked again: no second attempt, no second line
    assert GpuSampler(nvml).sample() == []
    nvml.shutdown()
    (line,) = collector_messages(caplog)
    assert line.startswith("GPU sampling is off: no NVIDIA driver found")
    assert "spans and engine metrics are still relayed" in line


def test_a_driver_library_mismatch_says_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="collector")
    mismatch = {"__nvml_error__": pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH}
    assert Nvml(lib=ReplayPynvml(tape({"nvmlInit()": mismatch}))).start() is False
    (line,) = collector_messages(caplog)
    assert "does not match the loaded NVIDIA kernel driver" in line and "reboot" in line


def test_shutdown_releases_nvml_once() -> None:
    fake = ReplayPynvml(tape(one_gpu()))
    nvml = Nvml(lib=fake)
    nvml.start()
    nvml.shutdown()
    nvml.shutdown()
    assert fake.calls["nvmlShutdown"] == 1
    assert GpuSampler(nvml).sample() == []


def test_process_utilisation_is_averaged_per_process_and_impossible_values_dropped() -> None:
    samples = [
        {"pid": 10, "timeStamp": 1_000, "smUtil": 40, "memUtil": 0, "encUtil": 0, "decUtil": 0},
        {"pid": 10, "timeStamp": 2_000, "smUtil": 60, "memUtil": 0, "encUtil": 0, "decUtil": 0},
        {"pid": 11, "timeStamp": 2_500, "smUtil": 4_294_967_295, "memUtil": 0, "encUtil": 0, "decUtil": 0},
        {"pid": 12, "timeStamp": 2_600, "smUtil": 5, "memUtil": 0, "encUtil": 0, "decUtil": 0},
    ]
    calls = one_gpu(
        **{
            f"nvmlDeviceGetComputeRunningProcesses({U})": [
                {"pid": 10, "usedGpuMemory": 3_000},
                {"pid": 11, "usedGpuMemory": None},
            ],
            f"nvmlDeviceGetProcessUtilization({U})": samples,
        }
    )
    (tick,) = run(ReplayPynvml(tape(calls)), 1)
    # pid 10: (40 + 60) / 2; pid 11: its only sample is the driver's "no value"; pid 12 is not a
    # compute process (graphics, say) but had samples.
    assert tick[0].processes == (
        ProcessUsage(10, 3_000, 50),
        ProcessUsage(11, None, None),
        ProcessUsage(12, None, 5),
    )


def test_a_gpu_without_processes_has_its_list_read_every_tick_and_one_with_them_every_fifth() -> None:
    def procs(*pids_mem: tuple[int, int]) -> dict[str, Any]:
        return {
            f"nvmlDeviceGetComputeRunningProcesses({U})": [
                {"pid": p, "usedGpuMemory": m} for p, m in pids_mem
            ],
            f"nvmlDeviceGetProcessUtilization({U})": [
                {"pid": p, "timeStamp": 1_000, "smUtil": 70, "memUtil": 0, "encUtil": 0, "decUtil": 0}
                for p, _ in pids_mem
            ]
            or NOT_FOUND,
        }

    fake = ReplayPynvml(
        tape(
            one_gpu(),  # 0: no process (a read is due)
            one_gpu(),  # 1: none: read again, as every tick while the list is empty
            one_gpu(**procs((10, 3_000))),  # 2: the engine starts: seen at once, no share yet
            one_gpu(**procs((10, 5_000))),  # 3: not read: the list of tick 2 again
            one_gpu(**procs((10, 5_000))),  # 4: the same
            one_gpu(**procs((10, 5_000))),  # 5: due: read, with its share
            one_gpu(),  # 6: it exited; not read until tick 10, so still reported
        )
    )
    nvml = Nvml(lib=fake)
    assert nvml.start()
    sampler = GpuSampler(nvml, energy_every=5, process_every=5, clock=fake.now_ns)
    seen = []
    for i in range(7):
        if i:
            fake.advance()
        seen.append(sampler.sample()[0].processes)
    nvml.shutdown()
    assert seen == [
        (),
        (),
        (ProcessUsage(10, 3_000, None),),
        (ProcessUsage(10, 3_000, None),),
        (ProcessUsage(10, 3_000, None),),
        (ProcessUsage(10, 5_000, 70),),
        (ProcessUsage(10, 5_000, None),),
    ]
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 4  # ticks 0, 1, 2 and 5
    assert fake.calls["nvmlDeviceGetProcessUtilization"] == 1  # tick 5 (tick 0 had no process)


MIG_A = "MIG-aaaaaaaa-0000-0000-0000-000000000001"
MIG_B = "MIG-bbbbbbbb-0000-0000-0000-000000000002"


def mig_tick(sm_a: float, sm_b: float) -> dict[str, Any]:
    calls: dict[str, Any] = {
        "nvmlInit()": None,
        "nvmlSystemGetDriverVersion()": "580.159.04",
        "nvmlDeviceGetCount()": 1,
        "nvmlDeviceGetHandleByIndex(0)": {"__handle__": U},
        f"nvmlDeviceGetUUID({U})": U,
        f"nvmlDeviceGetName({U})": "NVIDIA H100 80GB HBM3",
        f"nvmlDeviceGetMigMode({U})": [1, 1],
        f"nvmlDeviceGetMaxMigDeviceCount({U})": 3,
        f"nvmlDeviceGetMigDeviceHandleByIndex({U},0)": {"__handle__": MIG_A},
        f"nvmlDeviceGetMigDeviceHandleByIndex({U},1)": {"__handle__": MIG_B},
        f"nvmlDeviceGetMigDeviceHandleByIndex({U},2)": NOT_FOUND,
        f"nvmlGpmQueryDeviceSupport({U})": {"version": 1, "isSupportedDevice": 1},
        "nvmlGpmSampleAlloc()": {"__gpm_sample__": True},
        f"nvmlGpmMigSampleGet({U},1)": {"__gpm_sample__": True},
        f"nvmlGpmMigSampleGet({U},2)": {"__gpm_sample__": True},
        f"nvmlGpmMetricsGet({U}/gi1)": {
            "__gpm_metrics__": {"2": [0, sm_a], "3": [0, 1.0], "5": [0, 2.0], "10": [0, 3.0]}
        },
        f"nvmlGpmMetricsGet({U}/gi2)": {
            "__gpm_metrics__": {"2": [0, sm_b], "3": [0, 1.0], "5": [0, 2.0], "10": [0, 3.0]}
        },
    }
    for mig, gi, used in ((MIG_A, 1, 5 * 2**30), (MIG_B, 2, 0)):
        calls.update(
            {
                f"nvmlDeviceGetUUID({mig})": mig,
                f"nvmlDeviceGetName({mig})": "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
                f"nvmlDeviceGetGpuInstanceId({mig})": gi,
                f"nvmlDeviceGetUtilizationRates({mig})": NOT_SUPPORTED,
                f"nvmlDeviceGetMemoryInfo({mig})": {"total": 40 * 2**30, "free": 0, "used": used},
                f"nvmlDeviceGetComputeRunningProcesses({mig})": [],
            }
        )
    return calls


def test_mig_instances_are_gpus_of_their_own_with_their_memory_and_gpm() -> None:
    fake = ReplayPynvml(tape(mig_tick(0.0, 0.0), mig_tick(55.5, 0.5)))
    first, second = run(fake, 2)
    assert [s.uuid for s in second] == [MIG_A, MIG_B]
    a, b = second
    assert (a.index, a.name) == (0, "NVIDIA H100 80GB HBM3 MIG 3g.40gb")
    assert (a.mem_used_bytes, a.mem_total_bytes, b.mem_used_bytes) == (5 * 2**30, 40 * 2**30, 0)
    assert (a.sm_activity_pct, b.sm_activity_pct) == (55.5, 0.5)
    # utilisation is not defined per MIG instance; power, clocks and temperature belong to the card
    assert (a.util_gpu_pct, a.power_mw, a.sm_clock_mhz, a.temperature_c, a.energy_mj) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 0
