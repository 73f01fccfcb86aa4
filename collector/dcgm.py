"""DCGM exporter series -> GpuSamples, so the server sees one shape of GPU data whatever its source.

dcgm-exporter labels each series with ``UUID``, ``gpu`` (the index) and ``modelName``. Series of
MIG instances (labelled ``GPU_I_ID``) carry their parent's UUID and are skipped: NVML reports
MIG instances under their own UUIDs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from collector.samples import GpuSample

MIB = 2**20

# DCGM field -> (GpuSample attribute, multiplier to our unit, as a float)
FIELDS: dict[str, tuple[str, float, bool]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("util_gpu_pct", 1, False),  # %
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("util_mem_pct", 1, False),  # %
    "DCGM_FI_DEV_FB_USED": ("mem_used_bytes", MIB, False),  # MiB
    "DCGM_FI_DEV_POWER_USAGE": ("power_mw", 1000, False),  # W
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": ("power_limit_mw", 1000, False),  # W
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_mj", 1, False),  # mJ
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", 1, False),  # MHz
    "DCGM_FI_DEV_GPU_TEMP": ("temperature_c", 1, False),  # C
    "DCGM_FI_PROF_SM_ACTIVE": ("sm_activity_pct", 100, True),  # ratio 0-1
    "DCGM_FI_PROF_SM_OCCUPANCY": ("sm_occupancy_pct", 100, True),  # ratio 0-1
    "DCGM_FI_PROF_DRAM_ACTIVE": ("dram_bw_pct", 100, True),  # ratio 0-1
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": ("tensor_active_pct", 100, True),  # ratio 0-1
}
# Framebuffer parts that add up to the total where DCGM_FI_DEV_FB_TOTAL is not exported (MiB).
_FB_PARTS = ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED")


def dcgm_samples(families: Iterable[Any], time_ns: int) -> list[GpuSample]:
    """One GpuSample per GPU found in the exporter's families, all stamped ``time_ns``."""
    per_gpu: dict[str, dict[str, Any]] = {}
    for fam in families:
        for s in fam.samples:
            uuid = s.labels.get("UUID") or s.labels.get("uuid")
            if not uuid or s.labels.get("GPU_I_ID"):
                continue
            gpu = per_gpu.setdefault(
                uuid,
                {"index": s.labels.get("gpu", "0"), "name": s.labels.get("modelName", "unknown"), "raw": {}},
            )
            # the family name: the parser calls a counter's sample "<name>_total"
            gpu["raw"][fam.name] = s.value
    samples = []
    for uuid, gpu in sorted(per_gpu.items(), key=lambda kv: kv[0]):
        raw = gpu["raw"]
        values: dict[str, Any] = {}
        for field, (attr, scale, as_float) in FIELDS.items():
            if field in raw and raw[field] == raw[field]:  # NaN != NaN
                value = raw[field] * scale
                values[attr] = float(value) if as_float else int(round(value))
        if "DCGM_FI_DEV_FB_TOTAL" in raw:
            values["mem_total_bytes"] = int(raw["DCGM_FI_DEV_FB_TOTAL"] * MIB)
        elif all(p in raw for p in _FB_PARTS[:2]):
            values["mem_total_bytes"] = int(sum(raw.get(p, 0) for p in _FB_PARTS) * MIB)
        try:
            index = int(gpu["index"])
        except ValueError:
            index = 0
        samples.append(GpuSample(time_ns=time_ns, index=index, uuid=uuid, name=gpu["name"], **values))
    return samples
