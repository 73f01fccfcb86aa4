"""The one door to NVML (libnvidia-ml, through nvidia-ml-py's ``pynvml``).

No other module imports pynvml. Everything NVML can refuse is absorbed here: a field the GPU
does not support reads as ``None`` (logged once per field), a function missing from the
Python binding or from the driver is logged once with what to upgrade, and a machine with no
driver gives one clear line and ``start() -> False``, so the rest of the collector carries on.

Units are in the method names: bytes, mW, mJ, MHz, degrees C, percent (0-100).
"""

from __future__ import annotations

import atexit
import importlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Our field name -> the pynvml constant naming the GPM metric (Hopper and newer).
GPM_METRICS: tuple[tuple[str, str], ...] = (
    ("sm_activity_pct", "NVML_GPM_METRIC_SM_UTIL"),
    ("sm_occupancy_pct", "NVML_GPM_METRIC_SM_OCCUPANCY"),
    ("dram_bw_pct", "NVML_GPM_METRIC_DRAM_BW_UTIL"),
    ("tensor_active_pct", "NVML_GPM_METRIC_ANY_TENSOR_UTIL"),
)

_START_HINTS = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": (
        "no NVIDIA driver found (libnvidia-ml.so.1 is not loadable); in a container, start it with "
        "the NVIDIA container runtime and a GPU request"
    ),
    "NVML_ERROR_DRIVER_NOT_LOADED": "the NVIDIA kernel driver is not loaded",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": (
        "libnvidia-ml does not match the loaded NVIDIA kernel driver (driver upgraded without a "
        "reboot, or an image that ships its own libnvidia-ml): reboot the node or mount the host's "
        "driver libraries"
    ),
    "NVML_ERROR_NO_PERMISSION": "no permission to open /dev/nvidia*; run with access to the GPU devices",
}


@dataclass(frozen=True)
class GpuDevice:
    """A GPU as the sampler sees it: a whole GPU, or one MIG instance of a GPU."""

    index: int  # NVML index of the physical GPU (MIG instances share their parent's)
    uuid: str  # GPU-… or MIG-…
    name: str
    handle: Any
    parent_handle: Any = None  # MIG only: the physical GPU's handle
    gpu_instance_id: int | None = None  # MIG only

    @property
    def is_mig(self) -> bool:
        return self.parent_handle is not None


class Nvml:
    """Lazily initialised NVML session. Thread-safe to start and shut down; reads are NVML's own.

    ``lib`` is the pynvml module, or anything with its surface (tests pass a fake fed from
    recordings made on a real GPU). By default pynvml is imported on ``start()``, not before.
    """

    def __init__(self, lib: Any = None) -> None:
        self._lib = lib
        self._lock = threading.Lock()
        self._state = "new"  # new -> ready | unavailable -> closed
        self._said: set[tuple[str, str]] = set()
        self._codes: dict[Any, str] | None = None
        self._gpm_request: Any = None  # the sampler thread's reusable nvmlGpmMetricsGet buffer

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> bool:
        """Initialise NVML once. False, after one log line saying why, where it can't be used."""
        with self._lock:
            if self._state != "new":
                return self._state == "ready"
            if self._lib is None:
                try:
                    self._lib = importlib.import_module("pynvml")
                except ImportError:
                    log.warning(
                        "GPU sampling is off: nvidia-ml-py is not installed "
                        "(pip install nvidia-ml-py); spans and engine metrics are still relayed"
                    )
                    self._state = "unavailable"
                    return False
            try:
                self._lib.nvmlInit()
            except self._lib.NVMLError as exc:
                reason = _START_HINTS.get(self._code_name(exc), f"NVML failed to start: {exc}")
                log.warning("GPU sampling is off: %s; spans and engine metrics are still relayed", reason)
                self._state = "unavailable"
                return False
            self._state = "ready"
            atexit.register(self.shutdown)
            log.info("NVML started (driver %s)", self.driver_version() or "unknown")
            return True

    def shutdown(self) -> None:
        """Release NVML. Safe to call twice, and when it never started."""
        with self._lock:
            if self._state == "ready":
                try:
                    self._lib.nvmlShutdown()
                except self._lib.NVMLError as exc:
                    log.debug("nvmlShutdown: %s", exc)
                atexit.unregister(self.shutdown)
            if self._state != "new":
                self._state = "closed"

    @property
    def ready(self) -> bool:
        return self._state == "ready"

    # --- the one call path -----------------------------------------------------------------

    def _code_name(self, exc: Any) -> str:
        """``NVML_ERROR_NOT_SUPPORTED`` and friends, from the exception's numeric value."""
        if self._codes is None:
            self._codes = {getattr(self._lib, n): n for n in dir(self._lib) if n.startswith("NVML_ERROR_")}
        value = getattr(exc, "value", None)
        return self._codes.get(value, f"NVML error {value}")

    def _once(self, field: str, what: str, level: int, message: str, *args: Any) -> None:
        if (field, what) not in self._said:
            self._said.add((field, what))
            log.log(level, message, *args)

    def _call(self, field: str, fn_name: str, *args: Any, quiet: Mapping[str, Any] | None = None) -> Any:
        """Call ``pynvml.<fn_name>(*args)``; any NVML refusal becomes ``None``.

        ``quiet`` maps error names that are normal answers (``NVML_ERROR_NOT_FOUND`` meaning
        "no samples yet") to the value returned for them, silently.
        """
        if self._state != "ready":
            return None
        fn = getattr(self._lib, fn_name, None)
        if fn is None:
            self._once(
                field,
                "missing",
                logging.WARNING,
                "%s is unavailable: nvidia-ml-py has no %s; upgrade it (pip install -U nvidia-ml-py)",
                field,
                fn_name,
            )
            return None
        try:
            return fn(*args)
        except self._lib.NVMLError as exc:
            code = self._code_name(exc)
            if quiet and code in quiet:
                return quiet[code]
            if code == "NVML_ERROR_NOT_SUPPORTED":
                self._once(
                    field, code, logging.INFO, "%s is not supported on this GPU; it stays empty", field
                )
            elif code == "NVML_ERROR_FUNCTION_NOT_FOUND":
                self._once(
                    field,
                    code,
                    logging.WARNING,
                    "%s is unavailable: the driver's libnvidia-ml has no %s; a newer NVIDIA driver "
                    "provides it",
                    field,
                    fn_name,
                )
            else:
                self._once(field, code, logging.WARNING, "%s: %s failed: %s", field, fn_name, exc)
            return None
        except getattr(self._lib, "NVMLLibraryMismatchError", ()) as exc:
            self._once(
                field,
                "mismatch",
                logging.WARNING,
                "%s: %s (nvidia-ml-py is newer than the driver)",
                field,
                exc,
            )
            return None

    # --- reads ---------------------------------------------------------------------------

    def driver_version(self) -> str | None:
        return _text(self._call("driver_version", "nvmlSystemGetDriverVersion"))

    def devices(self) -> list[GpuDevice]:
        """Every GPU on the node; a GPU in MIG mode is replaced by its MIG instances."""
        lib = self._lib
        found: list[GpuDevice] = []
        for index in range(self._call("device_count", "nvmlDeviceGetCount") or 0):
            handle = self._call("device_handle", "nvmlDeviceGetHandleByIndex", index)
            if handle is None:
                continue
            uuid = _text(self._call("uuid", "nvmlDeviceGetUUID", handle))
            name = _text(self._call("name", "nvmlDeviceGetName", handle)) or "unknown"
            mig = self._call(
                "mig_mode", "nvmlDeviceGetMigMode", handle, quiet={"NVML_ERROR_NOT_SUPPORTED": None}
            )
            if mig and mig[0] == lib.NVML_DEVICE_MIG_ENABLE:
                found.extend(self._mig_devices(index, handle))
            elif uuid:
                found.append(GpuDevice(index, uuid, name, handle))
        return found

    def _mig_devices(self, index: int, parent: Any) -> list[GpuDevice]:
        instances = []
        absent = {"NVML_ERROR_NOT_FOUND": None, "NVML_ERROR_INVALID_ARGUMENT": None}
        for slot in range(self._call("mig", "nvmlDeviceGetMaxMigDeviceCount", parent) or 0):
            handle = self._call("mig", "nvmlDeviceGetMigDeviceHandleByIndex", parent, slot, quiet=absent)
            if handle is None:
                continue
            uuid = _text(self._call("uuid", "nvmlDeviceGetUUID", handle))
            name = _text(self._call("name", "nvmlDeviceGetName", handle)) or "unknown"
            gi = self._call("mig", "nvmlDeviceGetGpuInstanceId", handle)
            if uuid:
                instances.append(
                    GpuDevice(index, uuid, name, handle, parent_handle=parent, gpu_instance_id=gi)
                )
        return instances

    def utilization_pct(self, dev: GpuDevice) -> tuple[int, int] | None:
        """(GPU busy %, memory-controller busy %) over the driver's last sample period."""
        rates = self._call("util_gpu_pct", "nvmlDeviceGetUtilizationRates", dev.handle)
        return None if rates is None else (int(rates.gpu), int(rates.memory))

    def memory_bytes(self, dev: GpuDevice) -> tuple[int, int] | None:
        """(used, total) framebuffer bytes."""
        info = self._call("mem_used_bytes", "nvmlDeviceGetMemoryInfo", dev.handle)
        return None if info is None else (int(info.used), int(info.total))

    def power_mw(self, dev: GpuDevice) -> int | None:
        return _int(self._call("power_mw", "nvmlDeviceGetPowerUsage", dev.handle))

    def power_limit_mw(self, dev: GpuDevice) -> int | None:
        return _int(self._call("power_limit_mw", "nvmlDeviceGetEnforcedPowerLimit", dev.handle))

    def energy_mj(self, dev: GpuDevice) -> int | None:
        """Energy since the driver was loaded. Costs milliseconds: read it every few seconds."""
        return _int(self._call("energy_mj", "nvmlDeviceGetTotalEnergyConsumption", dev.handle))

    def sm_clock_mhz(self, dev: GpuDevice) -> int | None:
        return _int(self._call("sm_clock_mhz", "nvmlDeviceGetClockInfo", dev.handle, self._lib.NVML_CLOCK_SM))

    def temperature_c(self, dev: GpuDevice) -> int | None:
        return _int(
            self._call(
                "temperature_c", "nvmlDeviceGetTemperature", dev.handle, self._lib.NVML_TEMPERATURE_GPU
            )
        )

    def processes(self, dev: GpuDevice) -> list[tuple[int, int | None]]:
        """Compute processes on the GPU: (pid, bytes of GPU memory or None where hidden)."""
        procs = self._call("proc_mem_bytes", "nvmlDeviceGetComputeRunningProcesses", dev.handle)
        if procs is None:
            return []
        return [(int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory)) for p in procs]

    def process_utilization(self, dev: GpuDevice, since_us: int) -> list[tuple[int, int, int]]:
        """Per-process samples newer than ``since_us``: (pid, SM %, sample time in µs)."""
        samples = self._call(
            "proc_sm_pct",
            "nvmlDeviceGetProcessUtilization",
            dev.handle,
            since_us,
            quiet={"NVML_ERROR_NOT_FOUND": []},
        )
        if samples is None:
            return []
        return [(int(s.pid), int(s.smUtil), int(s.timeStamp)) for s in samples]

    # --- GPM (GPU performance monitoring, Hopper and newer) ------------------------------

    def gpm_supported(self, dev: GpuDevice) -> bool:
        support = self._call("gpm", "nvmlGpmQueryDeviceSupport", dev.parent_handle or dev.handle)
        return bool(support is not None and support.isSupportedDevice)

    def gpm_new_sample(self) -> Any:
        """A GPM sample buffer (free it with ``gpm_free``), or None."""
        return self._call("gpm", "nvmlGpmSampleAlloc")

    def gpm_take(self, dev: GpuDevice, sample: Any) -> bool:
        """Fill ``sample`` with the GPU's (or MIG instance's) counters now."""
        if dev.is_mig:
            got = self._call("gpm", "nvmlGpmMigSampleGet", dev.parent_handle, dev.gpu_instance_id, sample)
        else:
            got = self._call("gpm", "nvmlGpmSampleGet", dev.handle, sample)
        return got is not None

    def gpm_metrics(self, earlier: Any, later: Any) -> dict[str, float]:
        """GPM percentages (0-100) over the time between two samples of one device."""
        lib = self._lib
        request = self._gpm_request
        if request is None:
            # One request buffer, reused: it holds room for every GPM metric (~20 KB to clear).
            request = self._gpm_request = lib.c_nvmlGpmMetricsGet_t()
            request.version = lib.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = len(GPM_METRICS)
            for i, (_, const) in enumerate(GPM_METRICS):
                request.metrics[i].metricId = getattr(lib, const)
        request.sample1 = earlier
        request.sample2 = later
        answer = self._call("gpm", "nvmlGpmMetricsGet", request)
        if answer is None:
            return {}
        values: dict[str, float] = {}
        for i, (field, _) in enumerate(GPM_METRICS):
            metric = answer.metrics[i]
            if metric.nvmlReturn != lib.NVML_SUCCESS:
                self._once(
                    field,
                    "gpm",
                    logging.INFO,
                    "%s: GPM returned error %s; it stays empty",
                    field,
                    metric.nvmlReturn,
                )
                continue
            values[field] = float(metric.value)
        return values

    def gpm_free(self, sample: Any) -> None:
        if sample is not None:
            self._call("gpm", "nvmlGpmSampleFree", sample)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
